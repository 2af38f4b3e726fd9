//! Lever's Merkle tree against an independent RFC 6962 implementation in Python
//! (`tests/merkle/rfc6962.py`): every root, inclusion proof and consistency proof of trees
//! of 0 to 40 leaves must be the same bytes.

use lever::evidence::merkle;

fn hex(h: &merkle::Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn roots_and_proofs_match_an_independent_rfc_6962_implementation() {
    let out = std::process::Command::new("python3")
        .arg(super::root().join("tests/merkle/rfc6962.py"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vectors: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vectors.len(), 41);
    for v in vectors {
        let n = v["size"].as_u64().unwrap() as usize;
        let leaves: Vec<merkle::Hash> = (0..n)
            .map(|i| merkle::leaf_hash(format!("entry {i}").as_bytes()))
            .collect();
        assert_eq!(hex(&merkle::root(&leaves)), v["root"], "root of {n}");
        for i in 0..n {
            let proof: Vec<String> = merkle::inclusion_proof(&leaves, i)
                .iter()
                .map(hex)
                .collect();
            assert_eq!(
                serde_json::json!(proof),
                v["inclusion"][i],
                "inclusion of {i} in {n}"
            );
        }
        for m in 1..n {
            let proof: Vec<String> = merkle::consistency_proof(&leaves, m)
                .iter()
                .map(hex)
                .collect();
            assert_eq!(
                serde_json::json!(proof),
                v["consistency"][m - 1],
                "consistency {m} -> {n}"
            );
        }
    }
}
