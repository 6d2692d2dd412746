//! Differential test: both verification paths against the Wycheproof ECDSA
//! P-256/SHA-256 vectors in fixed-size (P1363) form. A `valid` vector must verify
//! on both, an `invalid` one must fail on both, an `acceptable` one must get the
//! same verdict from both.

use wattstream_sdk::{PublicKey, Signature, VerifyPath};
use wycheproof::TestResult;
use wycheproof::ecdsa::{TestName, TestSet};

#[test]
fn both_paths_match_wycheproof_p1363() {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).expect("wycheproof data loads");
    let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
    for group in &set.test_groups {
        let key = PublicKey::from_sec1(&group.key.key).expect("wycheproof test keys are on the curve");
        for test in &group.tests {
            let verdicts: Vec<bool> = VerifyPath::ALL
                .iter()
                .map(|path| {
                    Signature::from_slice(&test.sig)
                        .and_then(|sig| path.verify(&key, &test.msg, &sig))
                        .is_ok()
                })
                .collect();
            match test.result {
                TestResult::Valid => {
                    valid += 1;
                    assert_eq!(
                        verdicts,
                        [true, true],
                        "tc {} ({}) must verify",
                        test.tc_id,
                        test.comment
                    );
                }
                TestResult::Invalid => {
                    invalid += 1;
                    assert_eq!(
                        verdicts,
                        [false, false],
                        "tc {} ({}) must fail",
                        test.tc_id,
                        test.comment
                    );
                }
                TestResult::Acceptable => {
                    acceptable += 1;
                    assert_eq!(
                        verdicts[0], verdicts[1],
                        "tc {} ({}): paths disagree",
                        test.tc_id, test.comment
                    );
                }
            }
        }
    }
    assert!(
        valid > 100 && invalid > 50,
        "valid {valid}, invalid {invalid}, acceptable {acceptable}"
    );
}
