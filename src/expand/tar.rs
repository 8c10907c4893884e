//! tar (ustar, pax, GNU): 512-byte headers, each followed by its data padded
//! to 512 bytes. The data of regular files is content; headers, pax and GNU
//! long-name records, padding and the end-of-archive blocks stay residual.
//! The walk stops at the first header whose checksum fails; the rest of the
//! blob is residual.

use super::{Node, Walk};

const BLOCK: usize = 512;

pub(super) fn is_tar(b: &[u8]) -> bool {
    b.len() >= BLOCK && (&b[257..262] == b"ustar") && checksum_ok(&b[..BLOCK])
}

fn checksum_ok(h: &[u8]) -> bool {
    let Some(want) = octal(&h[148..156]) else { return false };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &c)| if (148..156).contains(&i) { 32 } else { c as u64 })
        .sum();
    sum == want
}

fn octal(f: &[u8]) -> Option<u64> {
    let s = f
        .iter()
        .skip_while(|&&c| c == b' ')
        .take_while(|&&c| (b'0'..=b'7').contains(&c));
    let mut v = 0u64;
    let mut any = false;
    for &c in s {
        v = v.checked_mul(8)?.checked_add((c - b'0') as u64)?;
        any = true;
    }
    any.then_some(v)
}

/// The size field: octal, or GNU base-256 when the high bit is set.
fn size(h: &[u8]) -> Option<u64> {
    let f = &h[124..136];
    if f[0] & 0x80 != 0 {
        let mut v = (f[0] & 0x7f) as u64;
        for &c in &f[1..] {
            v = v.checked_mul(256)?.checked_add(c as u64)?;
        }
        Some(v)
    } else {
        octal(f)
    }
}

pub(super) fn expand(w: &mut Walk, data: &[u8], depth: u8) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    let mut at = 0usize; // start of bytes not yet in a node
    let mut h = 0usize; // the next header
    while h + BLOCK <= data.len() {
        let header = &data[h..h + BLOCK];
        if header.iter().all(|&c| c == 0) || !checksum_ok(header) {
            break;
        }
        let Some(len) = size(header).and_then(|s| usize::try_from(s).ok()) else {
            break;
        };
        let body = h + BLOCK;
        let Some(end) = body.checked_add(len).filter(|&e| e <= data.len()) else {
            break;
        };
        if !w.member() {
            break;
        }
        let regular = matches!(header[156], b'0' | 0 | b'7');
        if regular && len > 0 {
            nodes.push(Node::Residual(data[at..body].to_vec()));
            nodes.append(&mut w.content(data[body..end].to_vec(), depth));
            at = end;
        }
        h = body + len.div_ceil(BLOCK) * BLOCK;
    }
    if nodes.is_empty() {
        return None;
    }
    nodes.push(Node::Residual(data[at..].to_vec()));
    Some(nodes)
}
