//! Temporary minimal broker harness (replaced by the full one).
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct KafkaBroker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl KafkaBroker {
    pub async fn start() -> KafkaBroker {
        let port = super::common::free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut b = KafkaBroker {
            child: None,
            port,
            dir,
        };
        b.spawn().await;
        b
    }
    async fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new("/work/tools/tansu/bin/tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("broker did not start");
    }
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
