# Man pages, made at build time from one source each, so they cannot drift:
# xpbridge(8), xpbctl(1), xpb-archive(1), xpb-bench(1) and xpb-gen(1) from the programs' own
# --help (tools/help2scd.py), xpbridge.conf(5) from docs/configuration.md
# (tools/md2scd.py); scdoc renders them.
find_program(SCDOC scdoc REQUIRED)
set(XPB_MAN_DIR ${CMAKE_BINARY_DIR}/man)
# xpbctl's commands, each with its own section (tests/tools/test_man.sh checks
# that this list matches `xpbctl --help`).
set(XPBCTL_COMMANDS convert send tail iq presence roster join sessions status open close)
# xpb-archive's commands, likewise (tests/tools/test_man.sh).
set(XPB_ARCHIVE_COMMANDS run search export import stats prune vacuum sql)

function(xpb_man_from_help target name section)
  set(out ${XPB_MAN_DIR}/${name}.${section})
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${XPB_MAN_DIR}
    COMMAND bash ${CMAKE_SOURCE_DIR}/tools/man_from_help.sh $<TARGET_FILE:${target}> ${name}
            ${section} ${out} ${ARGN}
    DEPENDS ${target} ${CMAKE_SOURCE_DIR}/tools/man_from_help.sh ${CMAKE_SOURCE_DIR}/tools/help2scd.py
    COMMENT "man page ${name}(${section}) from ${name} --help")
  set(XPB_MAN_PAGES ${XPB_MAN_PAGES} ${out} PARENT_SCOPE)
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endfunction()

set(XPB_MAN_PAGES)
xpb_man_from_help(xpbridge xpbridge 8)
xpb_man_from_help(xpbctl xpbctl 1 ${XPBCTL_COMMANDS})
xpb_man_from_help(xpb-archive xpb-archive 1 ${XPB_ARCHIVE_COMMANDS})
xpb_man_from_help(xpb-bench xpb-bench 1)
xpb_man_from_help(xpb-gen xpb-gen 1)

set(conf_man ${XPB_MAN_DIR}/xpbridge.conf.5)
add_custom_command(OUTPUT ${conf_man}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${XPB_MAN_DIR}
  COMMAND bash ${CMAKE_SOURCE_DIR}/tools/man_from_md.sh xpbridge.conf 5
          "the configuration file of xpbridge(8)" ${CMAKE_SOURCE_DIR}/docs/configuration.md
          ${conf_man}
  DEPENDS ${CMAKE_SOURCE_DIR}/docs/configuration.md ${CMAKE_SOURCE_DIR}/tools/md2scd.py
          ${CMAKE_SOURCE_DIR}/tools/man_from_md.sh
  COMMENT "man page xpbridge.conf(5) from docs/configuration.md" VERBATIM)
list(APPEND XPB_MAN_PAGES ${conf_man})
install(FILES ${conf_man} DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)

add_custom_target(man ALL DEPENDS ${XPB_MAN_PAGES})
