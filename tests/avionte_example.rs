//! The `avionte` example without its configuration: it says what to set and
//! exits 2, like any command missing its configuration, with no network call.

mod support;

use std::process::Command;

use support::processes::example_binary;

#[test]
fn without_credentials_it_names_what_to_set_and_exits_2() {
    let mut command = Command::new(example_binary("avionte"));
    for name in [
        "AVIONTE_API_KEY",
        "AVIONTE_CLIENT_ID",
        "AVIONTE_CLIENT_SECRET",
        "AVIONTE_TENANT",
        "AVIONTE_API_URL",
    ] {
        command.env_remove(name);
    }
    // One is set: the message tells set from missing, and shows no value.
    command.env("AVIONTE_CLIENT_ID", "client-id-value");
    let output = command.output().expect("the example runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.starts_with("error: "), "{stderr}");
    for missing in ["AVIONTE_API_KEY", "AVIONTE_CLIENT_SECRET", "AVIONTE_TENANT"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(missing) && l.ends_with("(missing)")),
            "{stderr}"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("AVIONTE_CLIENT_ID") && l.ends_with("(set)")),
        "{stderr}"
    );
    assert!(!stderr.contains("client-id-value"), "{stderr}");
}
