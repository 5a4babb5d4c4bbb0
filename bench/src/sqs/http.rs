//! A minimal keep-alive HTTP/1.1 client for the SQS bench: POST with a known body length, read the reply's
//! head and a `Content-Length` body (what AWS endpoints and moto send). Costs the load generator little.

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One connection to `host` (host:port).
pub struct Connection {
    host: String,
    stream: BufReader<TcpStream>,
    buf: Vec<u8>,
    /// The peer said `Connection: close` (moto's server does, every reply): reconnect before the next request.
    closed: bool,
}

impl Connection {
    pub async fn open(host: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(host)
            .await
            .with_context(|| format!("connect to {host}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            host: host.to_owned(),
            stream: BufReader::new(stream),
            buf: Vec::with_capacity(16 * 1024),
            closed: false,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// POST / with `headers` and `body`; returns the status and the reply body.
    pub async fn post(
        &mut self,
        headers: &[(String, String)],
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.closed {
            *self = Connection::open(&self.host).await?;
        }
        self.buf.clear();
        self.buf.extend_from_slice(b"POST / HTTP/1.1\r\n");
        for (k, v) in headers {
            self.buf
                .extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        self.buf
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.buf.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.buf).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = Vec::with_capacity(512);
        while !head.ends_with(b"\r\n\r\n") {
            let b = self.stream.read_u8().await.context("reply head")?;
            head.push(b);
            if head.len() > 64 * 1024 {
                bail!("reply head too long");
            }
        }
        let head = String::from_utf8_lossy(&head);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .context("a Content-Length reply")?;
        self.closed = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("connection")
                    && v.trim().eq_ignore_ascii_case("close")
            });
        let mut body = vec![0; length];
        self.stream
            .read_exact(&mut body)
            .await
            .context("reply body")?;
        Ok((status, body))
    }
}
