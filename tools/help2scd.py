#!/usr/bin/env python3
"""Turns a program's --help text into an scdoc(5) man page source, so the man
page is made from the --help text at build time and cannot drift from it.

  help2scd.py NAME SECTION HELP_FILE [TITLE=HELP_FILE ...] > NAME.SECTION.scd

HELP_FILE holds `PROG --help`: section headings in capitals at column 0
(NAME, SYNOPSIS, ...) and their text indented by four spaces. Each further
TITLE=HELP_FILE (a command's own --help) becomes a section of its own."""
import re
import sys


def escape(text):
    """scdoc treats * and _ as emphasis and \\ as an escape."""
    return re.sub(r'([\\*_])', r'\\\1', text)


def sections(text):
    """[(HEADING, [lines])] of a --help text."""
    out = []
    for line in text.splitlines():
        if re.match(r'^[A-Z][A-Z /-]*$', line.rstrip()):
            out.append((line.strip(), []))
        elif out:
            out[-1][1].append(line[4:] if line.startswith('    ') else line.lstrip())
        elif line.strip():
            out.append(('DESCRIPTION', [line]))
    return out


def literal(lines):
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines = lines[1:]
    if not lines:
        return ''
    # A literal block: scdoc keeps the layout of --help as it is.
    return '```\n' + '\n'.join(lines) + '\n```\n'


def render(name, section, main_text, extra):
    out = [f'{name}({section})', '']
    for heading, lines in sections(main_text):
        out.append(f'# {heading}')
        out.append('')
        if heading == 'NAME':
            out.append(escape(' '.join(l.strip() for l in lines if l.strip())))
            out.append('')
        else:
            out.append(literal(lines))
    for title, text in extra:
        out.append(f'# {title.upper()}')
        out.append('')
        body = []
        for heading, lines in sections(text):
            if heading == 'NAME':
                continue
            body.append(heading)
            body.extend('    ' + l if l else '' for l in lines)
        out.append(literal(body))
    return '\n'.join(out).rstrip('\n') + '\n'


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    name, section, main_file = argv[1:4]
    with open(main_file) as f:
        main_text = f.read()
    extra = []
    for arg in argv[4:]:
        title, _, path = arg.partition('=')
        with open(path) as f:
            extra.append((title, f.read()))
    sys.stdout.write(render(name, section, main_text, extra))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
