use super::*;
use crate::doctor::Status;

fn used(entries: u32, capacity: u32) -> Usage {
    Usage {
        map: "MCPI_PORTS",
        entries,
        capacity,
    }
}

#[test]
fn a_config_that_does_not_fit_fails_naming_the_numbers_and_the_fix() {
    for usage in [None, Some(used(3, 1024))] {
        let c = map_check("MCPI_PORTS", 1025, usage.as_ref());
        assert_eq!(c.status, Status::Fail, "{c}");
        assert!(
            c.detail
                .contains("the config needs 1025 entries, the map holds 1024"),
            "{c}"
        );
        assert_eq!(c.hint.as_deref(), Some(capacity::fix("MCPI_PORTS")));
    }
}

/// Each fill level, without the checks on the fix: the config's needs,
/// the pinned map's (entries, capacity), the status and a piece of the
/// detail.
#[test]
fn each_fill_level_gets_its_status_and_says_why() {
    let cases = [
        // The pinned capacity wins over the compiled one.
        (600, Some((1, 512)), Status::Fail, "the map holds 512"),
        // A map full of entries the config lacks.
        (
            1,
            Some((1024, 1024)),
            Status::Fail,
            "full (1024/1024 entries in use), 1023 more",
        ),
        // Full or nearly full for the config itself.
        (1024, Some((1024, 1024)), Status::Warn, "1024/1024"),
        (930, Some((930, 1024)), Status::Warn, "nearly full"),
        // Room to spare.
        (
            2,
            Some((2, 1024)),
            Status::Ok,
            "2/1024 entries in use, the config needs 2",
        ),
        (2, None, Status::Ok, "nothing pinned yet"),
    ];
    for (needed, pinned, status, detail) in cases {
        let usage = pinned.map(|(entries, capacity)| used(entries, capacity));
        let c = map_check("MCPI_PORTS", needed, usage.as_ref());
        assert_eq!(c.status, status, "{c}");
        assert!(c.detail.contains(detail), "{c}");
    }
}

#[test]
fn a_map_full_of_entries_the_config_lacks_says_to_reload() {
    let c = map_check("MCPI_PORTS", 1, Some(&used(1024, 1024)));
    assert!(c.hint.unwrap().starts_with("reload the agent"));
}
