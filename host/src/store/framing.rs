//! Length-prefixed fields: a little-endian `u32` length, then that many
//! bytes. The journal's write-ahead log frames its records with them, and
//! plugin data pages their entries.

/// Append `bytes` to `out` as one field.
pub(super) fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are bounded far below 4 GiB by the host.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads bytes front to back; `None` when they end early.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }

    /// How many bytes have been read.
    pub(super) fn at(&self) -> usize {
        self.at
    }

    /// Whether everything has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.data.len())?;
        let taken = &self.data[self.at..end];
        self.at = end;
        Some(taken)
    }

    /// The next little-endian `u32`.
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// The next field's bytes.
    pub(super) fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}
