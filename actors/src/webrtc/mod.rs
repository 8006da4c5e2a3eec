//! WebRTC peers: one [`WebrtcViewer`] actor per browser playing a stream (with its media pump),
//! one [`WebrtcPublisher`] per browser publishing one, and what they all share (UDP port range,
//! ICE addresses, settings).
//!
//! Invariants: each peer connection binds one UDP port of `webrtc.port_min..=port_max` on every
//! ICE address (the webrtc crate has no single-port mux); the port cursor moves on for every
//! connection so a port just freed is not reused at once; a port found busy is skipped.

mod feedback;
mod publisher;
mod pump;
mod viewer;

pub use publisher::{PublisherSpec, WebrtcPublisher};
pub use viewer::{ToClient, ViewerSignal, ViewerSpec, WebrtcViewer};

use mediarouter_core::settings::{StreamSettings, WebrtcSettings};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateType, Registry, SettingEngineBuilder,
};

/// Owns a peer connection and closes it when dropped, wherever that happens (a cancelled
/// future included): the webrtc crate keeps a dropped connection's driver, and its UDP port,
/// running otherwise.
pub struct PeerGuard(Arc<dyn PeerConnection>);

impl PeerGuard {
    pub fn connection(&self) -> Arc<dyn PeerConnection> {
        Arc::clone(&self.0)
    }
}

impl std::ops::Deref for PeerGuard {
    type Target = dyn PeerConnection;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let pc = Arc::clone(&self.0);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Which way media flows on a peer connection, and so which RTCP machinery it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// Sends media: answers NACKs from its send history, sends sender reports, and hands the
    /// browser's keyframe requests to the application.
    Viewer,
    /// Receives media: asks for retransmissions and sends receiver reports.
    Publisher,
}

impl PeerRole {
    /// The interceptors of this role, and the RTCP feedback (nack, nack pli) it announces on
    /// `engine`'s video codecs. Each interceptor is a stage every packet passes, so a peer gets
    /// only those for its own direction (a viewer sends hundreds of packets a second).
    fn interceptors(self, engine: &mut MediaEngine) -> Registry {
        use rtc::interceptor::{
            NackGeneratorBuilder, NackResponderBuilder, ReceiverReportBuilder, SenderReportBuilder,
            Slot,
        };
        for parameter in ["", "pli"] {
            engine.register_feedback(
                RTCPFeedback {
                    typ: "nack".to_owned(),
                    parameter: parameter.to_owned(),
                },
                RtpCodecKind::Video,
            );
        }
        match self {
            PeerRole::Viewer => Registry::new()
                .with(Slot::NackResponder, NackResponderBuilder::new().build())
                .with(Slot::SenderReport, SenderReportBuilder::new().build())
                .with(
                    Slot::Custom(feedback::SLOT),
                    feedback::KeyframeRequestMarker::default(),
                ),
            PeerRole::Publisher => Registry::new()
                .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
                .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
        }
    }
}

/// What every WebRTC viewer of the server shares.
pub struct WebrtcContext {
    pub settings: WebrtcSettings,
    pub stream: Arc<StreamSettings>,
    /// Addresses to bind; `None` means "every interface" (the crate expands the wildcard).
    addresses: Vec<IpAddr>,
    include_loopback: bool,
    next_port: AtomicU32,
}

impl WebrtcContext {
    pub fn new(settings: WebrtcSettings, stream: Arc<StreamSettings>) -> Arc<WebrtcContext> {
        let configured = settings.ice_addresses();
        let addresses = if configured.is_empty() {
            // Every IPv4 interface (the crate expands the wildcard, leaving out loopback), and
            // loopback for browsers on this machine.
            vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ]
        } else {
            configured
        };
        let include_loopback = addresses.iter().any(IpAddr::is_loopback);
        Arc::new(WebrtcContext {
            next_port: AtomicU32::new(u32::from(settings.port_min)),
            settings,
            stream,
            addresses,
            include_loopback,
        })
    }

    /// A UDP port of the range that is free right now on every address, or `None` when the
    /// whole range is taken.
    fn free_port(&self) -> Option<u16> {
        let (min, max) = (
            u32::from(self.settings.port_min),
            u32::from(self.settings.port_max),
        );
        let span = max - min + 1;
        for _ in 0..span {
            let port = min + self.next_port.fetch_add(1, Ordering::Relaxed) % span;
            let port = u16::try_from(port).ok()?;
            // Binding the wildcard succeeds only if no address has the port.
            if UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
                return Some(port);
            }
        }
        None
    }

    /// Builds a peer connection on a free port of the range, with `media_engine`'s codecs.
    pub async fn connect(
        &self,
        role: PeerRole,
        media_engine: MediaEngine,
        handler: Arc<dyn PeerConnectionEventHandler>,
    ) -> Result<(PeerGuard, u16), String> {
        let setting_engine = || {
            let builder = SettingEngineBuilder::new()
                .with_include_loopback_candidate(self.include_loopback)
                .with_ice_timeouts(
                    Some(Duration::from_secs(5)),
                    Some(Duration::from_millis(self.settings.connect_timeout_ms)),
                    Some(Duration::from_secs(2)),
                );
            if self.settings.public_ip.is_empty() {
                builder.build()
            } else {
                // Srflx keeps the host candidates usable for clients on the same network.
                builder
                    .with_nat_1to1_ips(
                        vec![self.settings.public_ip.clone()],
                        RTCIceCandidateType::Srflx,
                    )
                    .build()
            }
        };
        let mut last_error = String::from("no free UDP port in webrtc.port_min..=port_max");
        for _ in 0..4 {
            let Some(port) = self.free_port() else {
                break;
            };
            let addrs: Vec<SocketAddr> = self
                .addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            // A build consumes both, so each attempt makes its own.
            let mut engine = media_engine.clone();
            let registry = role.interceptors(&mut engine);
            let built = PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(engine)
                .with_setting_engine(setting_engine())
                .with_interceptor_registry(registry)
                .with_handler(Arc::clone(&handler))
                .with_udp_addrs(addrs)
                .build()
                .await;
            match built {
                Ok(pc) => return Ok((PeerGuard(Arc::new(pc)), port)),
                Err(e) => last_error = format!("port {port}: {e}"),
            }
        }
        Err(last_error)
    }
}
