//! The sled index: block number (big-endian key) to where the block's bytes are.

/// Where a block's bytes are: file number, offset of the block (after its
/// length prefix) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) file: u32,
    pub(super) offset: u64,
    pub(super) len: u32,
}

impl Location {
    pub(super) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.file.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(super) fn decode(raw: &[u8]) -> Option<Location> {
        let raw: &[u8; 16] = raw.try_into().ok()?;
        Some(Location {
            file: u32::from_be_bytes(raw[..4].try_into().ok()?),
            offset: u64::from_be_bytes(raw[4..12].try_into().ok()?),
            len: u32::from_be_bytes(raw[12..].try_into().ok()?),
        })
    }

    pub(super) fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

pub(super) fn encode_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

pub(super) fn decode_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}
