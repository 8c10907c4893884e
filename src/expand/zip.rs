//! zip: members are found through the central directory (zip64 too), then
//! each member's data is expanded where its local header says it starts.
//! Local headers, data descriptors, the central directory, comments and any
//! bytes between entries stay residual. Entries that overlap, point outside
//! the file, are encrypted, or whose deflate stream does not end where the
//! directory says, stay residual too.

use super::{Node, Walk, le16, le32, le64};

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const EOCD: u32 = 0x0605_4b50;
const EOCD64_LOCATOR: u32 = 0x0706_4b50;
const EOCD64: u32 = 0x0606_4b50;

pub(super) fn is_zip(b: &[u8]) -> bool {
    le32(b, 0) == Some(LOCAL) || (le32(b, 0) == Some(EOCD) && b.len() == 22)
}

struct Entry {
    data_start: usize,
    csize: usize,
    method: u16,
    encrypted: bool,
}

/// Where the central directory starts and how many entries it claims.
fn directory(b: &[u8]) -> Option<(usize, usize)> {
    let tail = b.len().saturating_sub(22 + 65_535);
    let eocd = (tail..=b.len().checked_sub(22)?)
        .rev()
        .find(|&i| le32(b, i) == Some(EOCD))?;
    let mut count = le16(b, eocd + 10)? as u64;
    let mut start = le32(b, eocd + 16)? as u64;
    if (count == 0xffff || start == 0xffff_ffff) && eocd >= 20 && le32(b, eocd - 20) == Some(EOCD64_LOCATOR) {
        let at = usize::try_from(le64(b, eocd - 12)?).ok()?;
        if le32(b, at) == Some(EOCD64) {
            count = le64(b, at + 32)?;
            start = le64(b, at + 48)?;
        }
    }
    Some((usize::try_from(start).ok()?, usize::try_from(count).ok()?))
}

/// The entries of the central directory, in the order of their data.
fn entries(b: &[u8], max: usize) -> Option<Vec<Entry>> {
    let (mut at, count) = directory(b)?;
    // Entries past the member budget stay residual.
    let count = count.min(max);
    let mut out = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        if le32(b, at) != Some(CENTRAL) {
            break;
        }
        let flags = le16(b, at + 8)?;
        let method = le16(b, at + 10)?;
        let mut csize = le32(b, at + 20)? as u64;
        let usize_ = le32(b, at + 24)?;
        let (n, m, k) = (
            le16(b, at + 28)? as usize,
            le16(b, at + 30)? as usize,
            le16(b, at + 32)? as usize,
        );
        let mut offset = le32(b, at + 42)? as u64;
        // zip64 extra field: the 64-bit values of the fields that are all ones.
        let mut x = at + 46 + n;
        let extra_end = x + m;
        while x + 4 <= extra_end {
            let (id, len) = (le16(b, x)?, le16(b, x + 2)? as usize);
            if id == 1 {
                let mut f = x + 4;
                if usize_ == u32::MAX {
                    f += 8;
                }
                if csize == u32::MAX as u64 {
                    csize = le64(b, f)?;
                    f += 8;
                }
                if offset == u32::MAX as u64 {
                    offset = le64(b, f)?;
                }
            }
            x += 4 + len;
        }
        at += 46 + n + m + k;
        let local = usize::try_from(offset).ok()?;
        if le32(b, local) != Some(LOCAL) {
            continue;
        }
        let data_start = local + 30 + le16(b, local + 26)? as usize + le16(b, local + 28)? as usize;
        let csize = usize::try_from(csize).ok()?;
        if data_start.checked_add(csize).is_none_or(|e| e > b.len()) {
            continue;
        }
        out.push(Entry {
            data_start,
            csize,
            method,
            encrypted: flags & 1 != 0,
        });
    }
    out.sort_by_key(|e| e.data_start);
    Some(out)
}

pub(super) fn expand(w: &mut Walk, data: &[u8], depth: u8) -> Option<Vec<Node>> {
    let entries = entries(data, w.budget.max_members)?;
    let mut nodes = Vec::with_capacity(entries.len() * 2 + 1);
    let mut at = 0usize;
    for e in entries {
        if e.data_start < at || e.encrypted || e.csize == 0 || !w.member() {
            continue;
        }
        let body = &data[e.data_start..e.data_start + e.csize];
        let node = match e.method {
            0 => Some(w.content(body.to_vec(), depth)),
            8 => match w.deflate(body, depth) {
                Some((node, consumed)) if consumed == e.csize => Some(vec![node]),
                _ => None,
            },
            _ => None,
        };
        if let Some(mut member) = node {
            nodes.push(Node::Residual(data[at..e.data_start].to_vec()));
            nodes.append(&mut member);
            at = e.data_start + e.csize;
        }
    }
    if nodes.is_empty() {
        return None;
    }
    nodes.push(Node::Residual(data[at..].to_vec()));
    Some(nodes)
}
