//! The one place a `liftbridge::Error` becomes a JS error.
//!
//! The rejection's message starts with the error's stable code in brackets (`[no_such_stream] stream …`);
//! `index.js` reads the code back, strips it and throws the matching `LiftbridgeError` subclass. A bracketed
//! prefix survives every napi path (sync throws and promise rejections alike), which a custom `code`
//! property does not.

use liftbridge::{Error, ErrorKind};

/// A napi error carrying `err`'s code and message.
pub(crate) fn to_napi(err: Error) -> napi::Error {
    coded(err.kind(), err.message())
}

/// A napi error with the code of `kind` and `message`.
pub(crate) fn coded(kind: ErrorKind, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("[{}] {message}", kind.code()),
    )
}

/// An `invalid_argument` error: bad input caught on the native side (the JS side checks first, so this is
/// the second line of defence).
pub(crate) fn invalid(message: impl std::fmt::Display) -> napi::Error {
    coded(ErrorKind::InvalidArgument, message)
}

/// Extension to turn client results into napi results.
pub(crate) trait IntoNapi<T> {
    /// Maps the error with [`to_napi`].
    fn napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for liftbridge::Result<T> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}
