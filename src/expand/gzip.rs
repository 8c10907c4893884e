//! gzip (RFC 1952): one or several members, each a header, a raw deflate
//! stream and an 8-byte trailer. Headers, trailers and anything after the
//! last member stay residual; each deflate stream is expanded.

use super::{Node, Walk};

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

pub(super) fn is_gzip(b: &[u8]) -> bool {
    b.len() >= 18 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8 && b[3] & 0xe0 == 0
}

/// The length of the member header at the start of `b`.
fn header_len(b: &[u8]) -> Option<usize> {
    if !is_gzip(b) {
        return None;
    }
    let flags = b[3];
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        at += 2 + super::le16(b, at)? as usize;
    }
    for f in [FNAME, FCOMMENT] {
        if flags & f != 0 {
            at += b.get(at..)?.iter().position(|&c| c == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    (at <= b.len()).then_some(at)
}

pub(super) fn expand(w: &mut Walk, data: &[u8], depth: u8) -> Option<Vec<Node>> {
    let mut nodes = Vec::new();
    let mut at = 0usize;
    while let Some(h) = header_len(&data[at..]) {
        let body = at + h;
        let Some((node, consumed)) = w.deflate(&data[body..], depth) else {
            break;
        };
        if !w.member() {
            break;
        }
        let end = body + consumed + 8;
        if end > data.len() {
            break;
        }
        nodes.push(Node::Residual(data[at..body].to_vec()));
        nodes.push(node);
        nodes.push(Node::Residual(data[body + consumed..end].to_vec()));
        at = end;
    }
    if nodes.is_empty() {
        return None;
    }
    nodes.push(Node::Residual(data[at..].to_vec()));
    Some(nodes)
}
