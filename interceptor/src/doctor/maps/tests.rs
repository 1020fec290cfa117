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

#[test]
fn the_pinned_capacity_wins_over_the_compiled_one() {
    let c = map_check("MCPI_PORTS", 600, Some(&used(1, 512)));
    assert_eq!(c.status, Status::Fail, "{c}");
    assert!(c.detail.contains("the map holds 512"), "{c}");
}

#[test]
fn a_map_full_of_entries_the_config_lacks_fails() {
    let c = map_check("MCPI_PORTS", 1, Some(&used(1024, 1024)));
    assert_eq!(c.status, Status::Fail, "{c}");
    assert!(
        c.detail
            .contains("full (1024/1024 entries in use), 1023 more"),
        "{c}"
    );
    assert!(c.hint.unwrap().starts_with("reload the agent"));
}

#[test]
fn full_or_nearly_full_for_the_config_itself_warns() {
    let exact = map_check("MCPI_PORTS", 1024, Some(&used(1024, 1024)));
    assert_eq!(exact.status, Status::Warn, "{exact}");
    let near = map_check("MCPI_PORTS", 930, Some(&used(930, 1024)));
    assert_eq!(near.status, Status::Warn, "{near}");
    assert!(near.detail.starts_with("nearly full"), "{near}");
}

#[test]
fn room_to_spare_is_ok() {
    let c = map_check("MCPI_PORTS", 2, Some(&used(2, 1024)));
    assert_eq!(c.status, Status::Ok, "{c}");
    assert_eq!(c.detail, "2/1024 entries in use, the config needs 2");
    let unpinned = map_check("MCPI_PORTS", 2, None);
    assert_eq!(unpinned.status, Status::Ok, "{unpinned}");
    assert!(unpinned.detail.contains("nothing pinned yet"));
}
