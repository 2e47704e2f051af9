//! One channel type for the stream helpers, whatever the caller's stack.

use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

use crate::grpc::GrpcService;

/// A type-erased gRPC channel, as the stream helpers hold it.
pub type BoxChannel = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    ChannelError,
>;

/// A transport error of a [`BoxChannel`] (tonic turns it into a `tonic::Status`).
///
/// Why not `tower::BoxError` itself: with a boxed error, the futures of tonic stubs fail the
/// `Send` check of `tokio::spawn` (a known rustc limitation with higher-ranked lifetimes).
#[derive(Debug)]
pub struct ChannelError(pub tower::BoxError);

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// Anything a tonic stub can call: our [`Balance`](crate::Balance), a
/// `tonic::transport::Channel`, or any tower stack of yours.
///
/// Implemented for every such service; the helpers box it so their own types stay simple.
pub trait IntoBoxChannel {
    /// The channel, boxed.
    fn into_box_channel(self) -> BoxChannel;
}

/// For services that carry tonic's requests and answer with a body of `Bytes` frames,
/// `Clone + Send + Sync + 'static`, with `Send` futures and errors that box.
impl<S: GrpcService + Clone + Sync> IntoBoxChannel for S {
    fn into_box_channel(self) -> BoxChannel {
        BoxCloneSyncService::new(
            self.map_response(|r: http::Response<S::ResponseBody>| r.map(tonic::body::Body::new))
                .map_err(|e: S::Error| ChannelError(e.into())),
        )
    }
}
