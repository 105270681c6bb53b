//! A real S3-compatible server on loopback: moto's `moto_server` (PyPI
//! package `moto[server]`, installed by `cargo xtask test`), for checkpoints
//! and sink files kept in S3. Buckets are created and listed with plain HTTP
//! requests, as any S3 client would send them; objects are read with
//! object_store's S3 client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A throwaway S3 server.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

/// `moto_server`: where `cargo xtask test` put it, or on PATH.
fn moto_program() -> PathBuf {
    match std::env::var_os("WEIR_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => super::require_program("moto_server"),
    }
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("find a free port");
        let child = Command::new(moto_program())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The environment a Weir process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "weir-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "weir-test-secret".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }

    /// Sends one HTTP request; returns the status code and the body.
    fn request(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string());
        (status, body)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "create bucket {bucket}: {body}");
    }

    /// The keys in `bucket` (up to 1000), in the server's order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?list-type=2"));
        assert_eq!(status, 200, "list bucket {bucket}: {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl S3Server {
    /// The content of object `key` of `bucket`, as text: read with a real S3
    /// client (object_store's, signed with the test keys), as objects are
    /// private. Called from a multi-threaded tokio test.
    pub fn get(&self, bucket: &str, key: &str) -> String {
        use object_store::ObjectStoreExt;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("weir-test")
            .with_secret_access_key("weir-test-secret")
            .build()
            .expect("an S3 client");
        let handle = tokio::runtime::Handle::current();
        let bytes = tokio::task::block_in_place(|| {
            handle.block_on(async {
                store
                    .get(&object_store::path::Path::from(key))
                    .await?
                    .bytes()
                    .await
            })
        })
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e}"));
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
