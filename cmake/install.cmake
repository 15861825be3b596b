# cmake --install: the programs, the example config as /etc/xpbridge/xpbridge.conf,
# the .proto files, man pages, the systemd unit, and the codec as a library
# (libxpbcodec.a + libxpbproto.a, public headers, pkg-config file, CMake package)
# so a C program can convert XML and records without the daemon.
include(CMakePackageConfigHelpers)

install(TARGETS xpbridge RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS xpbctl xpb-archive xpb-gen xpb-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# /etc/xpbridge, not /usr/etc, when the prefix is /usr (GNUInstallDirs' rule).
install(FILES ${CMAKE_SOURCE_DIR}/deploy/xpbridge.conf
        DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/xpbridge)
install(FILES ${CMAKE_SOURCE_DIR}/proto/xpb/v1/stanza.proto ${CMAKE_SOURCE_DIR}/proto/xpb/v1/bus.proto
        DESTINATION ${CMAKE_INSTALL_DATADIR}/xpbridge/proto/xpb/v1)

install(FILES ${CMAKE_SOURCE_DIR}/deploy/bash-completion/xpbctl
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

# The unit goes where systemd looks for packaged units (/lib/systemd/system on
# Debian 12), unless XPB_SYSTEMD_UNITDIR says otherwise.
if(NOT XPB_SYSTEMD_UNITDIR)
  pkg_get_variable(XPB_SYSTEMD_UNITDIR_PC systemd systemdsystemunitdir)
  if(XPB_SYSTEMD_UNITDIR_PC)
    set(XPB_SYSTEMD_UNITDIR ${XPB_SYSTEMD_UNITDIR_PC})
  else()
    set(XPB_SYSTEMD_UNITDIR /lib/systemd/system)
  endif()
endif()
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/xpbridge.service DESTINATION ${XPB_SYSTEMD_UNITDIR})

# A tuned profile for the lowest bus hop (docs/operations.md, "Latency"),
# where tuned 2.20 (Debian 12) looks for profiles; used only when chosen.
set(XPB_TUNED_PROFILEDIR ${CMAKE_INSTALL_PREFIX}/lib/tuned
    CACHE PATH "where tuned's profiles go (xpbridge-latency)")
install(FILES ${CMAKE_SOURCE_DIR}/deploy/tuned/xpbridge-latency/tuned.conf
        DESTINATION ${XPB_TUNED_PROFILEDIR}/xpbridge-latency)

# --- the codec library --------------------------------------------------------
# Fat LTO objects: the archive links with any compiler, not only this gcc's
# LTO plugin, while our own programs still optimise across files.
if(CMAKE_INTERPROCEDURAL_OPTIMIZATION AND CMAKE_C_COMPILER_ID STREQUAL "GNU")
  target_compile_options(xpbcodec PRIVATE -ffat-lto-objects)
  target_compile_options(xpbproto PRIVATE -ffat-lto-objects)
endif()
set(XPB_CODEC_HEADERS
  ${CMAKE_SOURCE_DIR}/codec/xpb_arena.h ${CMAKE_SOURCE_DIR}/codec/xpb_error.h
  ${CMAKE_SOURCE_DIR}/codec/xpb_jid.h ${CMAKE_SOURCE_DIR}/codec/xpb_stanza.h
  ${CMAKE_SOURCE_DIR}/codec/xpb_xml.h)
install(TARGETS xpbcodec xpbproto EXPORT xpbridgeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${XPB_CODEC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/xpbridge)
install(FILES ${CMAKE_BINARY_DIR}/gen/xpb/v1/stanza.pb-c.h ${CMAKE_BINARY_DIR}/gen/xpb/v1/bus.pb-c.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/xpbridge/xpb/v1)

install(EXPORT xpbridgeTargets NAMESPACE xpbridge:: FILE xpbridgeTargets.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xpbridge)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/xpbridgeConfig.cmake.in
  ${CMAKE_BINARY_DIR}/xpbridgeConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xpbridge)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/xpbridgeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/xpbridgeConfig.cmake ${CMAKE_BINARY_DIR}/xpbridgeConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/xpbridge)

set(XPB_PC_DL "")
if(NOT XPB_HAVE_XML_SETREPARSEDEFERRALENABLED AND CMAKE_DL_LIBS)
  set(XPB_PC_DL "-l${CMAKE_DL_LIBS}")
endif()
configure_file(${CMAKE_SOURCE_DIR}/cmake/xpbcodec.pc.in ${CMAKE_BINARY_DIR}/xpbcodec.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/xpbcodec.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
