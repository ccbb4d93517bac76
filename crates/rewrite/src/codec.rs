//! Content codings around the JSON rewriter: decode what the partner compressed, let the rewriter
//! see plain JSON, and encode again, chunk by chunk (`gzip`, `deflate`, `br`).
//!
//! The synchronous `flate2` / `brotli` writers work on each chunk inside the body's `poll_frame`:
//! streaming with no extra task, and memory bounded by the codecs' own windows.

use std::io::Write;

/// A `Content-Encoding` we can decode and re-encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
}

impl Coding {
    /// `None` for a coding we must not touch (it is then passed through and counted).
    pub fn from_header(value: Option<&str>) -> Option<Coding> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Coding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            Some(_) => None,
        }
    }
}

/// A decoder and an encoder for one body, both writing into their own output buffers.
pub enum Codec {
    Identity,
    Gzip(
        Box<flate2::write::GzDecoder<Vec<u8>>>,
        Box<flate2::write::GzEncoder<Vec<u8>>>,
    ),
    Deflate(
        flate2::write::ZlibDecoder<Vec<u8>>,
        flate2::write::ZlibEncoder<Vec<u8>>,
    ),
    Brotli(
        Box<brotli::DecompressorWriter<Vec<u8>>>,
        Box<brotli::CompressorWriter<Vec<u8>>>,
    ),
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Identity => "Identity",
            Codec::Gzip(..) => "Gzip",
            Codec::Deflate(..) => "Deflate",
            Codec::Brotli(..) => "Brotli",
        })
    }
}

impl Codec {
    pub fn new(coding: Coding) -> Self {
        let level = flate2::Compression::fast();
        match coding {
            Coding::Identity => Codec::Identity,
            Coding::Gzip => Codec::Gzip(
                Box::new(flate2::write::GzDecoder::new(Vec::new())),
                Box::new(flate2::write::GzEncoder::new(Vec::new(), level)),
            ),
            Coding::Deflate => Codec::Deflate(
                flate2::write::ZlibDecoder::new(Vec::new()),
                flate2::write::ZlibEncoder::new(Vec::new(), level),
            ),
            Coding::Brotli => Codec::Brotli(
                Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)),
                Box::new(brotli::CompressorWriter::new(Vec::new(), 4096, 4, 22)),
            ),
        }
    }

    /// Decodes one chunk of the partner's body into `plain`.
    pub fn decode(&mut self, chunk: &[u8], plain: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Codec::Identity => plain.extend_from_slice(chunk),
            Codec::Gzip(d, _) => {
                d.write_all(chunk)?;
                plain.append(d.get_mut());
            }
            Codec::Deflate(d, _) => {
                d.write_all(chunk)?;
                plain.append(d.get_mut());
            }
            Codec::Brotli(d, _) => {
                d.write_all(chunk)?;
                plain.append(d.get_mut());
            }
        }
        Ok(())
    }

    /// Encodes rewritten bytes; returns what can be sent now.
    pub fn encode(&mut self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Identity => Ok(plain.to_vec()),
            Codec::Gzip(_, e) => {
                e.write_all(plain)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Deflate(_, e) => {
                e.write_all(plain)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Brotli(_, e) => {
                e.write_all(plain)?;
                e.flush()?;
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }

    /// End of body: the decoder's last bytes into `plain` (the caller rewrites them and then calls
    /// `finish_encode`).
    pub fn finish_decode(&mut self, plain: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Codec::Identity => {}
            Codec::Gzip(d, _) => {
                d.try_finish()?;
                plain.append(d.get_mut());
            }
            Codec::Deflate(d, _) => {
                d.try_finish()?;
                plain.append(d.get_mut());
            }
            Codec::Brotli(d, _) => {
                d.flush()?;
                plain.append(d.get_mut());
            }
        }
        Ok(())
    }

    /// Encodes the last rewritten bytes and closes the stream.
    pub fn finish_encode(&mut self, plain: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Identity => Ok(plain.to_vec()),
            Codec::Gzip(_, e) => {
                e.write_all(plain)?;
                e.try_finish()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Deflate(_, e) => {
                e.write_all(plain)?;
                e.try_finish()?;
                Ok(std::mem::take(e.get_mut()))
            }
            Codec::Brotli(_, e) => {
                e.write_all(plain)?;
                // Dropping the writer would finish it but take the buffer with it: swap a fresh one in.
                let done = std::mem::replace(
                    e,
                    Box::new(brotli::CompressorWriter::new(Vec::new(), 4096, 4, 22)),
                );
                Ok(done.into_inner())
            }
        }
    }
}
