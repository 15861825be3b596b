#!/usr/bin/env python3
"""Turns docs/configuration.md into the scdoc(5) source of xpbridge.conf(5),
so the man page is made from the document at build time and cannot drift.

  md2scd.py NAME SECTION SUMMARY FILE.md > NAME.SECTION.scd

Handles the Markdown the document uses: # headings, paragraphs, ``` blocks,
bullet and numbered lists, tables (each row becomes an entry: the first
column, "default:" the second, then the rest), `code` and [links](url)."""
import re
import sys


def inline(text):
    text = re.sub(r'\*\*([^*]+)\*\*', '\x01\\1\x01', text)  # **bold**, kept aside
    text = re.sub(r'([\\*_])', r'\\\1', text)           # scdoc emphasis markers
    text = re.sub(r'\[([^\]]+)\]\([^)]+\)', r'\1', text)  # links: their text
    text = re.sub(r'`([^`]+)`', r'*\1*', text)          # code: bold
    return text.replace('\x01', '*')


def cells(row):
    return [c.strip() for c in row.strip().strip('|').split('|')]


def table(rows):
    head = cells(rows[0])
    out = []
    for row in rows[2:]:
        c = cells(row)
        out.append(inline(c[0]))
        rest = []
        if len(c) > 2 and head[1].lower() == 'default':
            rest.append(f'default: {inline(c[1])}.')
            c = [c[0]] + c[2:]
        rest.extend(inline(x) for x in c[1:])
        out.append('\t' + ' '.join(rest))
        out.append('')
    return out


def render(name, section, summary, md):
    out = [f'{name}({section})', '', '# NAME', '', f'{name} - {inline(summary)}', '']
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('```'):
            j = i + 1
            while j < len(lines) and not lines[j].startswith('```'):
                j += 1
            out.append('```')
            out.extend(lines[i + 1:j])
            out.append('```')
            i = j + 1
            continue
        if line.startswith('|'):
            j = i
            while j < len(lines) and lines[j].startswith('|'):
                j += 1
            out.extend(table(lines[i:j]))
            i = j
            continue
        m = re.match(r'^(#+)\s+(.*)$', line)
        if m:
            level = len(m.group(1))
            title = m.group(2).replace('`', '')
            if level == 1:
                out.extend(['# DESCRIPTION', ''])
            else:
                out.extend([('# ' if level == 2 else '## ') + title.upper()
                            if level == 2 else '## ' + title, ''])
            i += 1
            continue
        m = re.match(r'^\s*([*-]|\d+\.)\s+(.*)$', line)
        if m:
            mark = '-' if m.group(1) in '*-' else '.'
            text = m.group(2)
            i += 1
            while i < len(lines) and re.match(r'^\s+\S', lines[i]) and \
                    not re.match(r'^\s*([*-]|\d+\.)\s', lines[i]):
                text += ' ' + lines[i].strip()       # a continuation line
                i += 1
            out.append(f'{mark} {inline(text)}')
            continue
        out.append(inline(line.strip()) if line.strip() else '')
        i += 1
    return re.sub(r'\n{3,}', '\n\n', '\n'.join(out)).strip('\n') + '\n'


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    name, section, summary, path = argv[1:]
    with open(path) as f:
        sys.stdout.write(render(name, section, summary, f.read()))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
