//! The CONNECT handshake (§3.1, §3.2): the first packet must be CONNECT [MQTT-3.1.0-1]; its protocol level
//! picks the version for the rest of the connection. Then the client id (an empty one is assigned when the
//! session is clean, refused otherwise in 3.1.1 [MQTT-3.1.3-8]), login (user name and password against the
//! broker's users; no user name logs in as the configured default user when anonymous access is allowed;
//! enhanced authentication is not offered, so a v5 Authentication Method gets 0x8C),
//! the connection budget, the core session, the takeover of the client id, and the CONNACK with what the
//! broker allows (v5 receive maximum, maximum packet size, topic alias maximum, session expiry).

use std::net::SocketAddr;

use ferrymq_mqtt_codec::{ConnAck, Connect, Packet, Properties, ReasonCode};
use tracing::{info, warn};

use super::MqttContext;
use super::registry::Claim;
use crate::core::{ConnId, Session};
use crate::transport::Admission;

/// A v5 session expiry interval of this many seconds never expires (§3.1.2.11.2).
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// A logged-in client, before CONNACK is sent.
pub struct Established {
    pub core: Session,
    pub client_id: String,
    /// Whether the broker chose the client id (then it is sent in CONNACK, v5).
    pub assigned: bool,
    pub claim: Claim,
    pub connect: Box<Connect>,
    /// Seconds the session outlives the connection (0: it ends with it).
    pub session_expiry: u32,
    /// The keep-alive the broker imposed instead of the client's (v5 Server Keep Alive).
    pub server_keep_alive: Option<u16>,
}

impl Established {
    /// Whether the session outlives the connection.
    pub fn persistent(&self) -> bool {
        self.session_expiry > 0
    }
}

/// Why CONNECT was refused: the reason code for CONNACK (v3: its return code).
#[derive(Debug)]
pub struct Refused(pub ReasonCode);

/// Who is logging in, as the transport saw it.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub peer: SocketAddr,
    /// The common name of the client certificate the TLS handshake verified, if any.
    pub certificate_name: Option<&'a str>,
}

/// Checks a CONNECT and logs the client in (see the module docs).
pub async fn accept(
    ctx: &MqttContext,
    login: Login<'_>,
    conn: ConnId,
    admission: &mut Admission,
    mut connect: Box<Connect>,
) -> Result<Established, Refused> {
    let v5 = connect.version.is_v5();
    if connect.properties.authentication_method.is_some() {
        return Err(Refused(ReasonCode::BAD_AUTHENTICATION_METHOD)); // no enhanced authentication [MQTT-4.12.0-1]
    }
    let assigned = connect.client_id.is_empty();
    if assigned && !connect.clean_start && !v5 {
        return Err(Refused(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)); // [MQTT-3.1.3-8]
    }
    if assigned {
        connect.client_id = format!(
            "ferrymq-{}",
            crate::core::message::now_ms() ^ conn.rotate_left(32)
        );
    }
    let peer = login.peer;
    let user = match login
        .certificate_name
        .filter(|_| ctx.config.certificate_login)
    {
        // The certificate is the credential; a user name and password in CONNECT are not checked.
        Some(name) => ctx.broker.authenticate_external(name, peer.ip()),
        None => {
            let (user, password) = credentials(ctx, &connect)?;
            ctx.broker.authenticate(&user, &password, peer.ip())
        }
    }
    .map_err(|e| {
        warn!(%peer, certificate = ?login.certificate_name, error = %e, "MQTT login refused");
        Refused(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    })?;
    let vhost = &ctx.config.vhost;
    admission.establish(&user.name, vhost).map_err(|e| {
        warn!(%peer, error = %e, "MQTT connection refused by a connection limit");
        Refused(ReasonCode::SERVER_UNAVAILABLE)
    })?;
    let core = ctx.broker.open_session(user, vhost, conn).map_err(|e| {
        warn!(%peer, error = %e, "MQTT session refused");
        Refused(ReasonCode::NOT_AUTHORIZED)
    })?;
    let session_expiry = session_expiry(ctx, &connect);
    let max_keep_alive = ctx.config.max_keep_alive_secs;
    let server_keep_alive = (v5 && connect.keep_alive > max_keep_alive).then_some(max_keep_alive);
    if let Some(keep_alive) = server_keep_alive {
        connect.keep_alive = keep_alive;
    }
    let claim = ctx.registry.claim(&connect.client_id).await;
    if claim.took_over {
        info!(client_id = ?connect.client_id, "MQTT session taken over by a new connection");
    }
    Ok(Established {
        core,
        client_id: connect.client_id.clone(),
        assigned,
        claim,
        connect,
        session_expiry,
        server_keep_alive,
    })
}

/// The user name and password to log in with: the client's, or the default user's for an anonymous client.
fn credentials(ctx: &MqttContext, connect: &Connect) -> Result<(String, String), Refused> {
    let password = connect
        .password
        .as_deref()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    match &connect.username {
        Some(user) => Ok((user.clone(), password.unwrap_or_default())),
        None if ctx.config.allow_anonymous => Ok((
            ctx.config.default_user.clone(),
            ctx.config.default_pass.clone(),
        )),
        None => Err(Refused(ReasonCode::NOT_AUTHORIZED)),
    }
}

/// v3: clean session 0 keeps the session for the configured maximum; v5: the session expiry interval asked
/// for, capped at that maximum (0 when absent [MQTT-3.1.2-11.2]).
fn session_expiry(ctx: &MqttContext, connect: &Connect) -> u32 {
    let max = ctx.config.max_session_expiry_secs;
    if !connect.version.is_v5() {
        return if connect.clean_start { 0 } else { max };
    }
    connect
        .properties
        .session_expiry_interval
        .unwrap_or(0)
        .min(max)
}

/// The CONNACK for an accepted client: v5 properties say what the broker allows.
pub fn connack(ctx: &MqttContext, est: &Established, session_present: bool) -> Packet {
    let mut properties = Properties::default();
    if est.connect.version.is_v5() {
        let config = &ctx.config;
        properties.receive_maximum = Some(config.max_inflight);
        properties.maximum_packet_size = Some(config.max_packet_size);
        properties.topic_alias_maximum = Some(config.topic_alias_maximum);
        properties.retain_available = Some(1);
        properties.wildcard_subscription_available = Some(1);
        properties.subscription_identifier_available = Some(1);
        properties.shared_subscription_available = Some(1);
        properties.server_keep_alive = est.server_keep_alive;
        let asked = est.connect.properties.session_expiry_interval.unwrap_or(0);
        if asked != est.session_expiry {
            properties.session_expiry_interval = Some(est.session_expiry);
        }
        if est.assigned {
            properties.assigned_client_identifier = Some(est.client_id.clone());
        }
        if est.connect.properties.request_response_information == Some(1) {
            // The basis of response topics for this client (§4.10): its own branch of the topic tree.
            properties.response_information = Some(format!("response/{}", est.client_id));
        }
    }
    Packet::ConnAck(ConnAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties,
    })
}

/// The CONNACK refusing a client.
pub fn refusal(reason: ReasonCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    })
}
