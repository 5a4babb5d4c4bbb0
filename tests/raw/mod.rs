//! A raw AMQP 0-9-1 client for the tests of what real clients never send (amqp_raw.rs) and of close
//! sequences they rarely reach (amqp_close.rs): it writes exactly the frames a test builds, reads frames one
//! at a time with the codec crate, and never answers anything on its own. Every read gives up after [`WAIT`].
#![allow(dead_code)]

use std::time::Duration;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use ferrymq_amqp_codec::{self as codec, Frame, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestBroker;

/// How long a test waits for the broker's next frame.
pub const WAIT: Duration = Duration::from_secs(5);

/// Basic class id (content frames).
const BASIC_CLASS: u16 = 60;
/// The frame_max the raw client builds content frames for (the broker's default is larger).
const FRAME_MAX: u32 = 131_072;

pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    pub async fn connect(broker: &TestBroker) -> Raw {
        Raw::connect_to(broker.amqp_addr()).await
    }

    /// A socket to any AMQP listener (e.g. a broker process's), nothing sent yet.
    pub async fn connect_to(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Protocol header, start-ok (PLAIN guest/guest), tune-ok, open "/".
    pub async fn open(broker: &TestBroker) -> Raw {
        Raw::open_with_heartbeat(broker, 0).await
    }

    pub async fn open_with_heartbeat(broker: &TestBroker, heartbeat: u16) -> Raw {
        Raw::open_with(broker, heartbeat, codec::FieldTable::default()).await
    }

    pub async fn open_with(
        broker: &TestBroker,
        heartbeat: u16,
        client_properties: codec::FieldTable,
    ) -> Raw {
        Raw::open_at(broker.amqp_addr(), heartbeat, 16, client_properties).await
    }

    /// [`Raw::open_with`] against any AMQP listener, asking for `channel_max` channels.
    pub async fn open_at(
        addr: SocketAddr,
        heartbeat: u16,
        channel_max: u16,
        client_properties: codec::FieldTable,
    ) -> Raw {
        let mut raw = Raw::connect_to(addr).await;
        raw.send(&codec::PROTOCOL_HEADER).await;
        assert!(matches!(
            raw.frame().await,
            Some(Frame::Method(0, Method::ConnectionStart(_)))
        ));
        raw.method(
            0,
            Method::ConnectionStartOk(codec::ConnectionStartOk {
                client_properties,
                mechanism: "PLAIN".into(),
                response: Bytes::from_static(b"\0guest\0guest"),
                locale: "en_US".into(),
            }),
        )
        .await;
        let Some(Frame::Method(0, Method::ConnectionTune(tune))) = raw.frame().await else {
            panic!("no tune")
        };
        raw.method(
            0,
            Method::ConnectionTuneOk(codec::ConnectionTuneOk {
                channel_max,
                frame_max: tune.frame_max,
                heartbeat,
            }),
        )
        .await;
        raw.method(
            0,
            Method::ConnectionOpen(codec::ConnectionOpen {
                virtual_host: "/".into(),
            }),
        )
        .await;
        assert!(matches!(
            raw.frame().await,
            Some(Frame::Method(0, Method::ConnectionOpenOk))
        ));
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn method(&mut self, channel: u16, method: Method) {
        let mut out = BytesMut::new();
        codec::encode_method(channel, &method, &mut out);
        self.send(&out).await;
    }

    /// The next frame, or None once the broker closed the socket.
    pub async fn frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(f) =
                    codec::decode_frame(&mut self.buf, 1 << 20).expect("server sent a valid frame")
                {
                    return Some(f);
                }
                if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("server answered in time")
    }

    /// The next frame, which must be a method: its channel and the method.
    pub async fn next_method(&mut self) -> (u16, Method) {
        match self.frame().await {
            Some(Frame::Method(ch, m)) => (ch, m),
            other => panic!("expected a method frame, got {other:?}"),
        }
    }

    /// The connection.close the server sends next (skipping other frames), not answered yet.
    pub async fn connection_close(&mut self) -> codec::ConnectionClose {
        loop {
            match self.frame().await {
                Some(Frame::Method(0, Method::ConnectionClose(c))) => return c,
                Some(_) => continue,
                None => panic!("connection dropped without connection.close"),
            }
        }
    }

    /// The reply code of the connection.close the server sends next (skipping other frames), answered with
    /// close-ok.
    pub async fn close_code(&mut self) -> u16 {
        let close = self.connection_close().await;
        self.method(0, Method::ConnectionCloseOk).await;
        close.reply_code
    }

    /// The broker closes the socket with no further frame.
    pub async fn expect_eof(&mut self) {
        let next = self.frame().await;
        assert!(next.is_none(), "expected the socket to close, got {next:?}");
    }

    /// channel.open, answered with open-ok.
    pub async fn open_channel(&mut self, ch: u16) {
        self.method(ch, Method::ChannelOpen).await;
        assert_eq!(self.next_method().await, (ch, Method::ChannelOpenOk));
    }

    /// queue.declare (non-durable), answered with declare-ok; returns it.
    pub async fn declare_queue(&mut self, ch: u16, name: &str) -> codec::QueueDeclareOk {
        self.method(ch, queue_declare(name, false)).await;
        match self.next_method().await {
            (c, Method::QueueDeclareOk(ok)) if c == ch => ok,
            other => panic!("expected queue.declare-ok on channel {ch}, got {other:?}"),
        }
    }

    /// A round trip on `ch` (basic.qos, answered by qos-ok): every frame the broker sent before the qos-ok.
    pub async fn sync(&mut self, ch: u16) -> Vec<Frame> {
        self.method(ch, basic_qos(0)).await;
        let mut before = Vec::new();
        loop {
            match self.frame().await {
                Some(Frame::Method(c, Method::BasicQosOk)) if c == ch => return before,
                Some(f) => before.push(f),
                None => panic!("connection dropped before basic.qos-ok on channel {ch}"),
            }
        }
    }
}

/// basic.publish with its content (one header frame, body frames split at the raw client's frame_max).
pub fn publish(ch: u16, exchange: &str, routing_key: &str, body: &[u8]) -> BytesMut {
    let publish = Method::BasicPublish(codec::BasicPublish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    });
    let mut out = BytesMut::new();
    codec::encode_content(
        ch,
        &publish,
        BASIC_CLASS,
        &codec::BasicProperties::default(),
        &Bytes::copy_from_slice(body),
        FRAME_MAX,
        &mut out,
    );
    out
}

pub fn queue_declare(name: &str, passive: bool) -> Method {
    Method::QueueDeclare(codec::QueueDeclare {
        queue: name.into(),
        passive,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments: Default::default(),
    })
}

pub fn basic_qos(prefetch_count: u16) -> Method {
    Method::BasicQos(codec::BasicQos {
        prefetch_size: 0,
        prefetch_count,
        global: false,
    })
}

/// A client-initiated channel.close with no error (200).
pub fn channel_close() -> Method {
    Method::ChannelClose(codec::ChannelClose {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    })
}

/// A client-initiated connection.close with no error (200).
pub fn connection_close() -> Method {
    Method::ConnectionClose(codec::ConnectionClose {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    })
}

/// The broker still accepts a new connection and opens a channel on it.
pub async fn still_serving(broker: &TestBroker) {
    let mut raw = Raw::open(broker).await;
    raw.open_channel(1).await;
}
