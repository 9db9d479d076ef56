//! Plugin data packed into pages: many small entries per sled value.
//!
//! Plugins write small entries at the right edge of their key space (the
//! message log keys its entries by time). Stored one sled key each, every
//! entry cost a sled insert, and sled 0.34 splits a leaf every 16 keys and
//! then copies and rewrites its parent (up to 256 keys): that was half of
//! the plugin-data writer's time and a third of the in-process router's
//! CPU. Packed into pages, a round of a thousand appends rewrites the last
//! page and adds a few dozen more.
//!
//! # Layout
//!
//! A page is one sled entry. Its sled key is the page's *low bound*; it
//! holds the entries whose keys lie between its low bound (included) and
//! the next page's (excluded), in key order, each as a little-endian `u32`
//! length and the key's bytes, then the same for the value. So the page of
//! `key` is the one with the greatest low bound not above it; below every
//! low bound, a page with the empty low bound would hold it.
//!
//! A page over [`MAX_ENTRIES`] entries or [`MAX_BYTES`] bytes is cut into
//! pages of about half that; an emptied page is removed.
//!
//! The price is paid by writes at random places: each rewrites its whole
//! page (up to 4 KiB into sled's log instead of the entry alone). Measured
//! with `plugin_data_bench` (100,000 writes in rounds of 1,000 over 100,000
//! entries, 150-byte values): time-ordered keys 6.0 → 1.5 µs per write,
//! random keys 8.5–9.4 → 10–11.7 µs. Plugins write per message to logs;
//! data keyed by phone number changes far less often.
//!
//! # Crashes
//!
//! When a page is cut, its new pages are written first and the shortened
//! page last. A crash in between leaves the old page holding copies of
//! entries that now have pages of their own; those copies are never read (a
//! page's entries at or past the next page's low bound are skipped) and are
//! dropped the next time the page is written. As with one key per entry, a
//! crash may keep some of a round's writes and not others.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, Range};

use sled::IVec;

use super::StoreError;
use super::framing::{self, Reader};
use super::sled_store::engine;

/// A page holding more entries than this is cut.
pub(crate) const MAX_ENTRIES: usize = 64;

/// A page holding more bytes than this is cut (a single larger entry gets
/// a page of its own).
pub(crate) const MAX_BYTES: usize = 4 * 1024;

/// Writes by key: the value, or `None` for removed.
pub(crate) type Writes = BTreeMap<IVec, Option<IVec>>;

/// The low bounds of a map's pages, kept in memory by the map's one writer
/// so that finding a write's page costs no walk down sled's tree (a sled
/// read backwards costs more than the insert that follows it). Read from
/// sled on the first write.
#[derive(Default)]
pub(crate) struct Lows(Option<BTreeSet<IVec>>);

/// A key/value map kept in pages of one sled tree.
#[derive(Clone)]
pub(crate) struct Pages {
    tree: sled::Tree,
}

impl Pages {
    /// The map stored in `tree`, which holds nothing but its pages.
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Pages { tree }
    }

    /// The sled tree's name: which map this is.
    pub(crate) fn name(&self) -> IVec {
        self.tree.name()
    }

    /// The page that holds `key` if anything does: its low bound and bytes.
    fn page_of(&self, key: &[u8]) -> Result<Option<(IVec, IVec)>, StoreError> {
        self.tree.range(..=key).next_back().transpose().map_err(engine)
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        let Some((low, page)) = self.page_of(key)? else {
            return Ok(None);
        };
        for entry in Entries::new(&low, &page) {
            let (k, v) = entry?;
            match page[k].cmp(key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(Some(page.subslice(v.start, v.len()))),
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(None)
    }

    /// Every entry from `start` on, in key order.
    pub(crate) fn entries_from(&self, start: &[u8]) -> Result<EntriesFrom, StoreError> {
        let low = self.page_of(start)?.map(|(low, _)| low).unwrap_or_default();
        Ok(EntriesFrom {
            pages: self.tree.range(low..).peekable(),
            start: start.to_vec(),
            page: Vec::new().into_iter(),
        })
    }

    /// Apply `writes`, page by page. `lows` is the writer's list of this
    /// map's pages; on an error it is dropped, to be read again from sled.
    pub(crate) fn apply(&self, writes: &Writes, lows: &mut Lows) -> Result<(), StoreError> {
        let result = self.apply_to(writes, lows);
        if result.is_err() {
            lows.0 = None;
        }
        result
    }

    fn apply_to(&self, writes: &Writes, lows: &mut Lows) -> Result<(), StoreError> {
        let lows = match &mut lows.0 {
            Some(lows) => lows,
            None => lows.0.insert(self.tree.iter().keys().collect::<Result<_, _>>().map_err(engine)?),
        };
        let mut pending = writes.iter().peekable();
        while let Some((first, _)) = pending.peek() {
            let low = lows.range::<[u8], _>((Bound::Unbounded, Bound::Included(first.as_ref()))).next_back().cloned();
            let high = match &low {
                Some(low) => lows.range::<[u8], _>((Bound::Excluded(low.as_ref()), Bound::Unbounded)).next(),
                None => lows.first(),
            }
            .cloned();
            let stored = match &low {
                Some(low) => Some(self.tree.get(low).map_err(engine)?.ok_or_else(|| StoreError::Corrupt {
                    key: format!("plugin data page {}", String::from_utf8_lossy(low)),
                    reason: "the page went missing while its writer wrote".into(),
                })?),
                None => None,
            };
            let low = low.unwrap_or_default();
            let below_high = |key: &[u8]| high.as_ref().is_none_or(|high| key < high.as_ref());
            let mut page_writes = Vec::new();
            while let Some((key, value)) = pending.next_if(|(key, _)| below_high(key)) {
                page_writes.push((key.as_ref(), value.as_deref()));
            }
            let mut kept = Vec::new();
            if let Some(page) = &stored {
                for entry in Entries::new(&low, page) {
                    let (k, v) = entry?;
                    if below_high(&page[k.clone()]) {
                        kept.push((&page[k], &page[v]));
                    }
                }
            }
            let entries = merge(&kept, &page_writes);
            self.store(&low, stored.is_some(), &entries, lows)?;
        }
        Ok(())
    }

    /// Write the page at `low` holding `entries`, cut if it is too big,
    /// or remove it if it is empty; `lows` follows.
    fn store(
        &self,
        low: &IVec,
        existed: bool,
        entries: &[(&[u8], &[u8])],
        lows: &mut BTreeSet<IVec>,
    ) -> Result<(), StoreError> {
        let pieces = cut(entries);
        // New pages first, the page at `low` last: see "Crashes" above.
        for piece in pieces.iter().skip(1) {
            self.tree.insert(piece[0].0, encode(piece)).map_err(engine)?;
            lows.insert(IVec::from(piece[0].0));
        }
        match pieces.first() {
            Some(piece) => {
                self.tree.insert(low, encode(piece)).map_err(engine)?;
                lows.insert(low.clone());
            }
            None if existed => {
                self.tree.remove(low).map_err(engine)?;
                lows.remove(low);
            }
            None => {}
        }
        Ok(())
    }

    /// How many pages there are.
    #[cfg(test)]
    pub(crate) fn page_count(&self) -> usize {
        self.tree.len()
    }
}

/// The entries of the pages from one key on, in key order.
pub(crate) struct EntriesFrom {
    pages: std::iter::Peekable<sled::Iter>,
    start: Vec<u8>,
    /// What is left of the page being read.
    page: std::vec::IntoIter<(IVec, IVec)>,
}

impl EntriesFrom {
    /// The next page's entries from `start` on, up to the page after it.
    fn read_page(&mut self) -> Result<Option<Vec<(IVec, IVec)>>, StoreError> {
        let Some((low, page)) = self.pages.next().transpose().map_err(engine)? else {
            return Ok(None);
        };
        let high = match self.pages.peek() {
            Some(Ok((high, _))) => Some(high.clone()),
            Some(Err(_)) | None => None,
        };
        let mut entries = Vec::new();
        for entry in Entries::new(&low, &page) {
            let (k, v) = entry?;
            let key = &page[k.clone()];
            if high.as_ref().is_some_and(|high| key >= high.as_ref()) {
                break;
            }
            if key >= self.start.as_slice() {
                entries.push((page.subslice(k.start, k.len()), page.subslice(v.start, v.len())));
            }
        }
        Ok(Some(entries))
    }
}

impl Iterator for EntriesFrom {
    type Item = Result<(IVec, IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.page.next() {
                return Some(Ok(entry));
            }
            match self.read_page() {
                Ok(Some(entries)) => self.page = entries.into_iter(),
                Ok(None) => return None,
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// The entries of one page, as the ranges of their keys and values.
struct Entries<'a> {
    low: &'a [u8],
    page: Reader<'a>,
}

impl<'a> Entries<'a> {
    fn new(low: &'a [u8], page: &'a [u8]) -> Self {
        Entries { low, page: Reader::new(page) }
    }

    /// The range of the next field.
    fn field(&mut self) -> Result<Range<usize>, StoreError> {
        let start = self.page.at();
        let field = self.page.field().ok_or_else(|| StoreError::Corrupt {
            key: format!("plugin data page {}", String::from_utf8_lossy(self.low)),
            reason: format!("a field at byte {start} runs past the end"),
        })?;
        let end = self.page.at();
        Ok(end - field.len()..end)
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(Range<usize>, Range<usize>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() {
            return None;
        }
        let entry = self.field().and_then(|key| Ok((key, self.field()?)));
        if entry.is_err() {
            // Stop after reporting it.
            self.page = Reader::new(&[]);
        }
        Some(entry)
    }
}

/// `kept` with `writes` applied; both are in key order.
fn merge<'a>(kept: &[(&'a [u8], &'a [u8])], writes: &[(&'a [u8], Option<&'a [u8]>)]) -> Vec<(&'a [u8], &'a [u8])> {
    let mut merged = Vec::with_capacity(kept.len() + writes.len());
    let mut kept = kept.iter().peekable();
    for &(key, value) in writes {
        while let Some(&older) = kept.next_if(|(k, _)| *k < key) {
            merged.push(older);
        }
        kept.next_if(|(k, _)| *k == key);
        if let Some(value) = value {
            merged.push((key, value));
        }
    }
    merged.extend(kept.copied());
    merged
}

/// The bytes an entry takes in a page.
fn size(entry: &(&[u8], &[u8])) -> usize {
    8 + entry.0.len() + entry.1.len()
}

/// `entries` as one page, or, if that is too big, as pages of about half
/// the limits each.
fn cut<'e, 'a>(entries: &'e [(&'a [u8], &'a [u8])]) -> Vec<&'e [(&'a [u8], &'a [u8])]> {
    let bytes: usize = entries.iter().map(size).sum();
    if entries.len() <= MAX_ENTRIES && bytes <= MAX_BYTES {
        return if entries.is_empty() { Vec::new() } else { vec![entries] };
    }
    let mut pieces = Vec::new();
    let (mut start, mut piece_bytes) = (0, 0);
    for (i, entry) in entries.iter().enumerate() {
        let full = i - start >= MAX_ENTRIES / 2 || piece_bytes + size(entry) > MAX_BYTES / 2;
        if full && i > start {
            pieces.push(&entries[start..i]);
            (start, piece_bytes) = (i, 0);
        }
        piece_bytes += size(entry);
    }
    pieces.push(&entries[start..]);
    pieces
}

/// One page's bytes.
fn encode(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut page = Vec::with_capacity(entries.iter().map(size).sum());
    for (key, value) in entries {
        framing::put(&mut page, key);
        framing::put(&mut page, value);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, sled::Tree, Pages) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path()).open().expect("open sled");
        let tree = db.open_tree("pages").expect("tree");
        (dir, tree.clone(), Pages::new(tree))
    }

    fn writes(entries: &[(&str, Option<&str>)]) -> Writes {
        entries.iter().map(|(k, v)| (IVec::from(*k), v.map(IVec::from))).collect()
    }

    fn all(pages: &Pages) -> Vec<(Vec<u8>, Vec<u8>)> {
        pages
            .entries_from(b"")
            .expect("scan")
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .expect("entries")
    }

    /// Every page's entries are in order, inside its bounds and within the
    /// limits, and no page is empty.
    fn check_pages(tree: &sled::Tree) {
        let pages: Vec<(IVec, IVec)> = tree.iter().collect::<Result<_, _>>().expect("pages");
        for (i, (low, page)) in pages.iter().enumerate() {
            let high = pages.get(i + 1).map(|(k, _)| k.clone());
            let keys: Vec<&[u8]> =
                Entries::new(low, page).map(|e| e.map(|(k, _)| &page[k])).collect::<Result<_, _>>().expect("page");
            assert!(!keys.is_empty(), "page {low:?} is empty");
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "page {low:?} out of order");
            assert!(keys[0] >= low.as_ref(), "page {low:?} holds a key below it");
            if let Some(high) = high {
                assert!(*keys.last().expect("a key") < high.as_ref(), "page {low:?} reaches the next page");
            }
            assert!(keys.len() <= MAX_ENTRIES && (keys.len() == 1 || page.len() <= MAX_BYTES), "page {low:?} too big");
        }
    }

    #[test]
    fn pages_agree_with_a_plain_map_through_random_rounds() {
        let (_dir, tree, pages) = open();
        let mut lows = Lows::default();
        let mut model = BTreeMap::<Vec<u8>, Vec<u8>>::new();
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..200 {
            if round % 50 == 49 {
                // As a writer that starts again: read the pages from sled.
                lows = Lows::default();
            }
            let mut batch = Writes::new();
            for _ in 0..rng.usize(1..200) {
                let key = format!("{}/{:04}", ["a", "ab", "b", "log"][rng.usize(..4)], rng.u16(..3000));
                if rng.u8(..5) == 0 {
                    batch.insert(IVec::from(key.as_bytes()), None);
                } else {
                    // Now and then a value bigger than a page.
                    let len = if rng.u8(..50) == 0 { MAX_BYTES + 100 } else { rng.usize(0..300) };
                    batch.insert(IVec::from(key.as_bytes()), Some(IVec::from(vec![b'v'; len])));
                }
            }
            pages.apply(&batch, &mut lows).expect("apply");
            for (key, value) in &batch {
                match value {
                    Some(value) => model.insert(key.to_vec(), value.to_vec()),
                    None => model.remove(key.as_ref()),
                };
            }
            check_pages(&tree);
            let probe = format!("ab/{:04}", rng.u16(..3000));
            assert_eq!(
                pages.get(probe.as_bytes()).expect("get").map(|v| v.to_vec()),
                model.get(probe.as_bytes()).cloned(),
                "round {round}: {probe}"
            );
            let from: Vec<(Vec<u8>, Vec<u8>)> = pages
                .entries_from(probe.as_bytes())
                .expect("scan")
                .take(30)
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<_, _>>()
                .expect("entries");
            let expected: Vec<(Vec<u8>, Vec<u8>)> =
                model.range(probe.clone().into_bytes()..).take(30).map(|(k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(from, expected, "round {round}: scan from {probe}");
        }
        let expected: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
        assert_eq!(all(&pages), expected);
    }

    #[test]
    fn appends_fill_pages_instead_of_one_sled_key_each() {
        let (_dir, tree, pages) = open();
        let mut lows = Lows::default();
        for round in 0..10 {
            let batch: Writes = (0..100)
                .map(|i| {
                    (IVec::from(format!("log/{:06}", round * 100 + i).as_bytes()), Some(IVec::from(&[b'x'; 40][..])))
                })
                .collect();
            pages.apply(&batch, &mut lows).expect("apply");
        }
        check_pages(&tree);
        assert_eq!(all(&pages).len(), 1000);
        // 1000 entries of 58 bytes: at least 16 a page.
        assert!(pages.page_count() <= 1000 / 16, "{} pages", pages.page_count());
    }

    #[test]
    fn emptied_pages_are_removed_and_the_map_can_grow_again() {
        let (_dir, tree, pages) = open();
        let mut lows = Lows::default();
        let many: Writes =
            (0..500).map(|i| (IVec::from(format!("k/{i:04}").as_bytes()), Some(IVec::from("v")))).collect();
        pages.apply(&many, &mut lows).expect("apply");
        assert!(pages.page_count() > 1);
        let gone: Writes = many.keys().map(|k| (k.clone(), None)).collect();
        pages.apply(&gone, &mut lows).expect("apply");
        assert_eq!(pages.page_count(), 0);
        assert_eq!(all(&pages), Vec::<(Vec<u8>, Vec<u8>)>::new());
        pages.apply(&writes(&[("z", Some("last")), ("a", Some("first"))]), &mut lows).expect("apply");
        check_pages(&tree);
        assert_eq!(pages.get(b"a").expect("get").as_deref(), Some(&b"first"[..]));
        assert_eq!(pages.get(b"z").expect("get").as_deref(), Some(&b"last"[..]));
    }

    #[test]
    fn copies_left_behind_by_a_cut_that_crashed_are_never_read_and_are_dropped() {
        let (_dir, tree, pages) = open();
        // A crash after the new page at "m" was written but before the page
        // at "" was shortened: it still holds "m" and "n", now stale.
        let stale: [(&[u8], &[u8]); 3] = [(b"a", b"1"), (b"m", b"stale"), (b"n", b"stale")];
        tree.insert(b"", encode(&stale)).expect("insert");
        let fresh: [(&[u8], &[u8]); 1] = [(b"m", b"fresh")];
        tree.insert(b"m", encode(&fresh)).expect("insert");

        assert_eq!(pages.get(b"m").expect("get").as_deref(), Some(&b"fresh"[..]));
        assert_eq!(pages.get(b"n").expect("get"), None);
        let expected = vec![(b"a".to_vec(), b"1".to_vec()), (b"m".to_vec(), b"fresh".to_vec())];
        assert_eq!(all(&pages), expected);

        pages.apply(&writes(&[("b", Some("2"))]), &mut Lows::default()).expect("apply");
        check_pages(&tree);
        assert_eq!(pages.page_count(), 2);
        let first = tree.get(b"").expect("get").expect("page");
        assert_eq!(first.len(), encode(&[(b"a", b"1"), (b"b", b"2")]).len(), "the stale copies were dropped");
    }

    #[test]
    fn a_damaged_page_is_reported_not_misread() {
        let (_dir, tree, pages) = open();
        let mut page = encode(&[(b"key", b"value")]);
        page.truncate(page.len() - 2);
        tree.insert(b"", page).expect("insert");
        let err = pages.get(b"key").expect_err("damaged");
        assert!(err.to_string().contains("runs past the end"), "{err}");
        assert!(pages.entries_from(b"").expect("scan").any(|e| e.is_err()));
        assert!(
            pages.apply(&writes(&[("other", Some("v"))]), &mut Lows::default()).is_err(),
            "a write does not drop what it cannot read"
        );
    }
}
