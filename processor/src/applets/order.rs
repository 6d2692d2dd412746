//! The order of a project's chain, explicit: where a deployed applet goes
//! (`--before NAME`, `--after NAME`, else where it was, else last), and the
//! one rule about it that protects money. A *gate* (an applet deployed with
//! `gate`, like `identity`) decides whether an event may be rewarded; an
//! applet that imports `ws_send_tx` *mints*. The chain stops at the first
//! applet that fails, so a minter placed before a gate of the same event
//! type pays before the gate has spoken: such a chain is refused unless the
//! deployment is forced.

/// Where a deployment goes in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Where it already is; last for a new applet.
    Keep,
    Before(String),
    After(String),
}

/// What the rule needs to know of one applet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub event_type: String,
    pub gate: bool,
    pub mints: bool,
}

/// The chain after putting `link` at `place` (replacing an applet of the same name).
pub fn place(chain: &[Link], link: Link, place: &Place) -> Result<Vec<Link>, String> {
    let old = chain.iter().position(|l| l.name == link.name);
    let mut out: Vec<Link> = chain.iter().filter(|l| l.name != link.name).cloned().collect();
    let at = match place {
        Place::Keep => old.unwrap_or(out.len()),
        Place::Before(other) | Place::After(other) => {
            let Some(i) = out.iter().position(|l| &l.name == other) else {
                return Err(format!("there is no applet `{other}` to place it next to"));
            };
            if matches!(place, Place::After(_)) {
                i + 1
            } else {
                i
            }
        }
    };
    out.insert(at.min(out.len()), link);
    Ok(out)
}

/// The first minter that runs before a gate of the same event type, if any.
pub fn check(chain: &[Link]) -> Result<(), String> {
    for (i, minter) in chain.iter().enumerate().filter(|(_, l)| l.mints) {
        if let Some(gate) = chain[i + 1..]
            .iter()
            .find(|l| l.gate && l.event_type == minter.event_type)
        {
            return Err(format!(
                "`{}` mints before the gate `{}` runs on {} events: place it after the gate \
                 (or force the deployment)",
                minter.name, gate.name, minter.event_type
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, gate: bool, mints: bool) -> Link {
        Link {
            name: name.into(),
            event_type: "DATA".into(),
            gate,
            mints,
        }
    }

    fn names(chain: &[Link]) -> Vec<&str> {
        chain.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn applets_go_where_they_are_told_or_stay_where_they_were() {
        let chain = vec![link("identity", true, false), link("tiered", false, true)];
        let c = place(&chain, link("log", false, false), &Place::Keep).unwrap();
        assert_eq!(names(&c), ["identity", "tiered", "log"]);
        let c = place(&c, link("log", false, false), &Place::Before("identity".into())).unwrap();
        assert_eq!(names(&c), ["log", "identity", "tiered"]);
        let c = place(&c, link("identity", true, false), &Place::Keep).unwrap();
        assert_eq!(
            names(&c),
            ["log", "identity", "tiered"],
            "a redeploy keeps its place"
        );
        let c = place(&c, link("log", false, false), &Place::After("tiered".into())).unwrap();
        assert_eq!(names(&c), ["identity", "tiered", "log"]);
        assert!(place(&c, link("x", false, false), &Place::After("nope".into())).is_err());
    }

    #[test]
    fn a_minter_before_a_gate_of_its_event_type_is_refused() {
        assert!(check(&[link("identity", true, false), link("tiered", false, true)]).is_ok());
        let e = check(&[link("tiered", false, true), link("identity", true, false)]).unwrap_err();
        assert!(e.contains("`tiered` mints before the gate `identity`"), "{e}");
        // Observers may go anywhere; a gate of another event type does not count.
        assert!(
            check(&[
                link("log", false, false),
                link("identity", true, false),
                link("tiered", false, true)
            ])
            .is_ok()
        );
        let mut other = link("identity", true, false);
        other.event_type = "OTHER".into();
        assert!(check(&[link("tiered", false, true), other]).is_ok());
    }
}
