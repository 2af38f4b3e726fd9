//! A Merkle tree over evidence records, hashed as RFC 6962 / RFC 9162 specify: a leaf is
//! `SHA-256(0x00 || entry)`, an inner node `SHA-256(0x01 || left || right)`, the empty
//! tree `SHA-256("")`, and a tree of `n` leaves splits at the largest power of two below
//! `n`. Inclusion proofs show that one entry is at index `i` of a tree of size `n`;
//! consistency proofs show that a tree of size `m` is a prefix of one of size `n`. The
//! proofs and their verification follow RFC 9162 §2.1.3 and §2.1.4.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash of a leaf whose entry is `entry`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two smaller than `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The root of the tree over `leaves` (leaf hashes), in order.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let (left, right) = leaves.split_at(split(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree over `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    let (left, right) = leaves.split_at(k);
    if index < k {
        let mut p = inclusion_proof(left, index);
        p.push(root(right));
        p
    } else {
        let mut p = inclusion_proof(right, index - k);
        p.push(root(left));
        p
    }
}

/// Whether `proof` shows `leaf` at `index` of a tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

/// The consistency proof from the tree of the first `old` leaves to the tree over all
/// `leaves` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Vec<Hash> {
    if old == 0 || old >= leaves.len() {
        return Vec::new();
    }
    subproof(old, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            Vec::new()
        } else {
            vec![root(leaves)]
        };
    }
    let k = split(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        let mut p = subproof(m, left, whole);
        p.push(root(right));
        p
    } else {
        let mut p = subproof(m - k, right, false);
        p.push(root(left));
        p
    }
}

/// Whether `proof` shows that the tree of `old` leaves with `old_root` is a prefix of the
/// tree of `new` leaves with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    &fr == old_root && &sr == new_root && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_a_wrong_one_does_not() {
        for n in 1..=40 {
            let all = leaves(n);
            let r = root(&all);
            for i in 0..n {
                let p = inclusion_proof(&all, i);
                assert!(
                    verify_inclusion(&all[i], i as u64, n as u64, &p, &r),
                    "{i} of {n}"
                );
                let other = (i + 1) % n;
                if other != i {
                    assert!(!verify_inclusion(&all[other], i as u64, n as u64, &p, &r));
                }
            }
            for m in 1..=n {
                let p = consistency_proof(&all, m);
                let old = root(&all[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &r, &p),
                    "{m} -> {n}"
                );
                if m < n {
                    // A rewritten prefix: the old root no longer follows.
                    let mut forged = all.clone();
                    forged[0] = leaf_hash(b"rewritten");
                    let forged_root = root(&forged);
                    let p = consistency_proof(&forged, m);
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &old,
                        &forged_root,
                        &p
                    ));
                }
            }
        }
    }

    #[test]
    fn the_empty_tree_and_one_leaf_hash_as_the_rfc_says() {
        assert_eq!(
            crate::base::hash::hex(&root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root(&[leaf_hash(b"")]), leaf_hash(b""));
    }
}
