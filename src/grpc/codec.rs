//! The protobuf codec of every kpistream service (`build.rs` names it in
//! `codec_path`): tonic-prost's, except for what a request that is not a protobuf
//! message answers.
//!
//! tonic-prost maps a decode error to `INTERNAL`, which tells a client the server is
//! broken. Bytes that do not decode as the call's message are the client's mistake, so
//! this codec answers `INVALID_ARGUMENT` with a sentence, before any handler runs, for
//! every method of every service. The generated clients share the codec (the builder
//! has one `codec_path`), so a client would report an undecodable *answer* the same
//! way; a kpistream server never sends one.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// [`ProstCodec`] with a decoder that answers `INVALID_ARGUMENT` for undecodable bytes.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder {
            buffer_settings: self.inner.decoder().buffer_settings(),
            _message: PhantomData,
        }
    }
}

/// Decodes one message of type `U`; bytes that are not one answer `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U> {
    buffer_settings: BufferSettings,
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not a valid protobuf encoding of this call's request ({e}): build it with the .proto files in proto/kpistream/v1"
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
    }
}
