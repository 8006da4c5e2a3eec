//! Keyframe requests from WebRTC viewers, on their way to the publisher.
//!
//! The webrtc crate ends inbound RTCP at the end of its interceptor chain: reports and NACKs
//! are for the interceptors. A keyframe request (PLI or FIR) is the exception, because only the
//! application can answer it — by asking the stream's publisher for a keyframe. This
//! interceptor, last in the chain, marks those packets for delivery to the application, where
//! they surface as `TrackLocalEvent::OnRtcpPacket` on the viewer's video track.
//!
//! Invariants: everything else inbound still stops at the chain's end; outbound packets pass
//! untouched; only the keyframe requests of a compound packet are delivered.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Its place in the chain: after every interceptor the crate places, so they have all acted on
/// the RTCP before it narrows a packet to its keyframe requests.
pub const SLOT: usize = 1_000_000;

#[derive(Default)]
pub struct KeyframeRequestMarker {
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestMarker {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            packets.retain(|p| is_keyframe_request(p.as_ref()));
            if packets.is_empty() {
                // Nothing for the application; the interceptors before this one have used it.
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.outbound.pop_front()
    }
}

impl Interceptor for KeyframeRequestMarker {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
