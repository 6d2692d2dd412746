//! The Merkle tree of a seal: one leaf per device that has a balance, sorted by
//! address, hashed as [`wattstream_sdk::proof`] says.

use wattstream_sdk::proof::{Step, leaf_hash, node_hash};

/// A device's line in a seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub address: [u8; 20],
    /// Units credited in the sealed epoch.
    pub epoch_total: u128,
    /// Cumulative balance at the seal.
    pub balance: u128,
}

/// A built tree.
#[derive(Debug, Clone)]
pub struct Tree {
    pub leaves: Vec<Leaf>,
    levels: Vec<Vec<[u8; 32]>>,
}

impl Tree {
    /// Builds the tree of `leaves` (sorted here by address) for `epoch`.
    pub fn build(mut leaves: Vec<Leaf>, epoch: u64) -> Self {
        leaves.sort_by_key(|l| l.address);
        let mut levels = vec![
            leaves
                .iter()
                .map(|l| leaf_hash(&l.address, l.epoch_total, l.balance, epoch))
                .collect::<Vec<_>>(),
        ];
        while levels.last().map_or(0, Vec::len) > 1 {
            let prev = levels.last().expect("a level");
            let next = prev
                .chunks(2)
                .map(|p| {
                    if p.len() == 2 {
                        node_hash(&p[0], &p[1])
                    } else {
                        p[0]
                    }
                })
                .collect();
            levels.push(next);
        }
        Tree { leaves, levels }
    }

    /// The root (32 zero bytes for an empty tree).
    pub fn root(&self) -> [u8; 32] {
        self.levels
            .last()
            .and_then(|l| l.first().copied())
            .unwrap_or([0; 32])
    }

    /// The proof for `address`, if it has a leaf.
    pub fn proof(&self, address: &[u8; 20]) -> Option<(Leaf, Vec<Step>)> {
        let mut i = self.leaves.binary_search_by(|l| l.address.cmp(address)).ok()?;
        let mut steps = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = if i % 2 == 0 { i + 1 } else { i - 1 };
            if let Some(h) = level.get(sibling) {
                steps.push(Step {
                    sibling: hex::encode(h),
                    left: sibling < i,
                });
            }
            i /= 2;
        }
        Some((
            self.leaves[self.leaves.binary_search_by(|l| l.address.cmp(address)).ok()?].clone(),
            steps,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattstream_sdk::proof::fold;

    #[test]
    fn every_leaf_proves_to_the_root() {
        for n in 1..12u8 {
            let leaves: Vec<Leaf> = (0..n)
                .map(|i| Leaf {
                    address: [i.wrapping_mul(37); 20],
                    epoch_total: i as u128,
                    balance: 10 * i as u128,
                })
                .collect();
            let tree = Tree::build(leaves.clone(), 5);
            for l in &leaves {
                let (leaf, steps) = tree.proof(&l.address).unwrap();
                let h = leaf_hash(&leaf.address, leaf.epoch_total, leaf.balance, 5);
                assert_eq!(fold(h, &steps).unwrap(), tree.root(), "{n} leaves");
                // Another epoch number does not prove.
                let other = leaf_hash(&leaf.address, leaf.epoch_total, leaf.balance, 6);
                assert_ne!(fold(other, &steps).unwrap(), tree.root());
            }
        }
    }
}
