-- Prosody config for one xpbridge integration test server, filled in by
-- tests/integration/xpbtest/servers.py (dollar-brace placeholders). Loopback only, no s2s.
run_as_root = true
daemonize = false
pidfile = "${dir}/prosody.pid"
data_path = "${dir}/data"
certificates = "${dir}/nocerts"
plugin_paths = { }
log = { ${loglevel} = "${dir}/prosody.log" }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { ${c2s_port} }
c2s_direct_tls_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { ${tls_ports} }
s2s_ports = { }
s2s_interfaces = { }
component_ports = { }
http_interfaces = { "127.0.0.1" }
http_ports = { ${http_port} }
https_interfaces = { "127.0.0.1" }
https_ports = { ${https_ports} }
http_default_host = "xpb.test"

modules_enabled = {
	"roster"; "saslauth"; "offline"; ${tls_module} "disco"; "carbons"; "ping"; "posix";
	${smacks_module} ${websocket_module} ${mam_module}
}
modules_disabled = { "s2s"; "s2s_auth_certs"; "dialback" }

authentication = "internal_hashed"
-- internal_hashed stores keys for one SCRAM hash only (SHA-1 or SHA-256).
password_hash = "${password_hash}"
c2s_require_encryption = ${tls_required}
allow_unencrypted_plain_auth = ${allow_plain_plaintext}
disable_sasl_mechanisms = { ${disabled_mechs} }
consider_websocket_secure = true
smacks_hibernation_time = ${resume_timeout}
smacks_max_unacked_stanzas = 5
c2s_timeout = 60
-- 200 simultaneous logins: a deeper accept queue than the default.
network_settings = { tcp_backlog = 1024 }

${ssl_line}

VirtualHost "${domain}"

${mam_config}

Component "conference.${domain}" "muc"
${muc_config}
