//! nginx as the TLS ceiling of an upload: an HTTPS `PUT` sink (the DAV
//! module, in Debian's `nginx-light`) that writes each body to a file in a
//! directory beside the gateway's data, so the ceiling pays for TLS and a
//! file write as the gateway does (not its fsync). One worker process, TLS
//! 1.3 only, a fresh self-signed certificate. Its CPU time is its master's
//! and worker's, read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub ca: Vec<u8>,
    dir: tempfile::TempDir,
}

/// The nginx binary, if one is installed.
pub fn find() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Nginx {
    /// Starts `bin` with its files in a new directory inside `parent`.
    pub fn start(bin: &Path, parent: &Path) -> Nginx {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("www")).unwrap();
        std::fs::create_dir_all(d.join("body")).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(d.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("key.pem"), key.serialize_pem()).unwrap();
        let port = free_port();
        let p = d.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n\
             pid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n\
             client_max_body_size 0;\n  client_body_buffer_size 1m;\n\
             server {{\n    listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {p}/cert.pem;\n    ssl_certificate_key {p}/key.pem;\n\
             ssl_protocols TLSv1.3;\n\
             location / {{ root {p}/www; dav_methods PUT DELETE; }}\n  }}\n}}\n"
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(d.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx {
                    child,
                    port,
                    ca: cert.pem().into_bytes(),
                    dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
        );
    }

    /// CPU seconds used so far by the master and its workers.
    pub fn cpu_seconds(&self) -> f64 {
        let master = self.child.id();
        let mut pids = vec![master];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            if rest.split_whitespace().nth(1) == Some(&master.to_string()) {
                pids.push(pid);
            }
        }
        pids.into_iter().map(super::cpu_seconds).sum()
    }

    /// Removes what the last PUT stored.
    pub fn clear(&self) {
        for entry in std::fs::read_dir(self.dir.path().join("www"))
            .unwrap()
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master ends its workers, then itself (SIGKILL would
        // leave the workers behind).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
