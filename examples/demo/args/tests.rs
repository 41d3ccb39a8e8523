//! The command line's unit tests: every flag, its defaults and the
//! combinations refused.

use super::*;
use crate::tokens::UrlToken;

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    parse_from(std::iter::once("demo").chain(args.iter().copied()))
}

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn debug_of_the_arguments_shows_no_secret() {
    let args = [
        "--token-url",
        "http://cid:PASSW0RD@127.0.0.1/token?k=K3Y",
        "--client-id",
        "id",
        "--client-secret",
        "S3CRET",
        "--token-header",
        "x-api-key: H34DER",
        "--api-header",
        "tenant: H34DER",
        "--url",
        "http://u:PASS@127.0.0.1/api?api_key=K3Y",
        "--resource",
        "https://api.example/v1?api_key=R3SOURCE",
        "--audience",
        "https://aud.example/?key=AUD13NCE",
        "--grant",
        "token-exchange",
        "--subject-token-file",
        "/run/secrets/subject-token",
        "--dpop",
    ];
    let Ok(Command::Run(parsed)) = parse(&args) else {
        panic!("the arguments parse");
    };
    let shown = format!("{parsed:?}");
    assert!(shown.contains("dpop: true"), "{shown}");
    // The token's file, never its contents (not read yet, anyway).
    assert!(shown.contains("/run/secrets/subject-token"), "{shown}");
    for secret in [
        "PASSW0RD", "PASS", "K3Y", "S3CRET", "H34DER", "R3SOURCE", "AUD13NCE",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("x-api-key"), "{shown}");
    assert!(shown.contains("http://127.0.0.1/api"), "{shown}");
    assert!(shown.contains("https://api.example/v1"), "{shown}");
    assert!(shown.contains("https://aud.example/"), "{shown}");
    // The flags refuse a password in a resource or audience; Debug
    // hides one all the same, and a query secret, with a token per URL.
    let tokens = Tokens::PerUrl(vec![
        UrlToken {
            resource: Some("https://u:PASSW0RD@api.example/a?api_key=K3Y".into()),
            audience: Some("https://u:PASSW0RD@aud.example/?k=K3Y".into()),
        },
        UrlToken {
            resource: None,
            audience: Some("https://aud.example/b?k=K3Y".into()),
        },
    ]);
    let shown = format!("{tokens:?}");
    for secret in ["PASSW0RD", "K3Y"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("https://api.example/a"), "{shown}");
    assert!(shown.contains("https://aud.example/b"), "{shown}");
}

#[test]
fn refusals_name_the_flag_but_never_repeat_the_value() {
    for args in [
        &["--token-header", "x-api-key=S3CR3T"][..],
        &["--token-header=x-api-key S3CR3T: v"],
        &["--api-header", "x-api-key: S3CR3T\u{7f}"],
        &["--bogus=S3CR3T"],
        &["-x=S3CR3T"],
        &["S3CR3T"],
        &["--", "S3CR3T"],
        &["--redis", "notredis://u:S3CR3T@host/"],
        &["--redis-cluster", "notredis://u:S3CR3T@host/"],
        &[
            "--redis-cluster",
            "redis://127.0.0.1:1/",
            "--redis-cluster",
            "redis://u:S3CR3T@127.0.0.1:2/x/y",
        ],
        &["--auth", "S3CR3T"],
        &["--auth", "--client-secret=S3CR3T"],
        &[
            "--token-url",
            "--client-secret=S3CR3T",
            "--client-id",
            "i",
            "--url",
            "u",
        ],
        &[
            "--serve",
            "5",
            "--client-id",
            "--client-secret=S3CR3T",
            "--api-key",
            "k",
        ],
        &[
            "--duration",
            "5",
            "--client-secret",
            "S3CR3T",
            "--requests",
            "5",
        ],
    ] {
        let Err(error) = parse(args) else {
            panic!("{args:?} parsed");
        };
        assert_eq!(error.exit_code(), 2, "{args:?}");
        let shown = error.render().to_string();
        assert!(shown.starts_with("error: "), "{shown}");
        assert!(!shown.contains("S3CR3T"), "{args:?}: {shown}");
    }
}

#[test]
fn a_repeated_flag_takes_its_last_value_and_a_secret_may_start_with_a_dash() {
    let Ok(Command::Run(args)) = parse(&[
        "--requests",
        "5",
        "--requests",
        "7",
        "--client-secret",
        "-s3cret",
    ]) else {
        panic!("the arguments parse");
    };
    assert_eq!(args.workload.requests, 7);
    assert_eq!(args.client_secret.as_deref(), Some("-s3cret"));
}

#[test]
fn the_rules_between_flags_hold() {
    let remote = [
        "--token-url",
        "http://h/t",
        "--client-id",
        "i",
        "--url",
        "http://h/a",
    ];
    let serve = ["--serve", "5", "--client-secret", "s", "--api-key", "k"];
    let with = |base: &[&'static str], more: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(more).copied().collect()
    };
    let mut refused = vec![
        with(&remote, &["--ttl", "5"]),
        vec!["--token-url", "http://h/t", "--url", "http://h/a"],
        vec!["--token-url", "http://h/t", "--client-id", "i"],
        vec!["--url", "http://h/a", "--client-id", "i"],
        vec!["--api-key", "k"],
        vec!["--requests", "5", "--duration", "5"],
        vec!["--requests", "-5"],
        vec!["--concurrency", "0"],
        vec!["--auth", "digest"],
        vec!["--subject-token-file", "t"],
        vec!["--grant", "token-exchange"],
        vec![
            "--grant",
            "token-exchange",
            "--subject-token-file",
            "t",
            "--actor-token-type",
            "urn:a:b",
        ],
        vec![
            "--grant",
            "token-exchange",
            "--subject-token-file",
            "t",
            "--subject-token-type",
            "jwt",
        ],
        vec!["--grant", "refresh-token"],
    ];
    #[cfg(feature = "redis")]
    refused.push(vec![
        "--grant",
        "token-exchange",
        "--subject-token-file",
        "t",
        "--redis",
        "redis://127.0.0.1:1/",
    ]);
    for flag in [
        &["--requests", "5"][..],
        &["--duration", "5"],
        &["--concurrency", "5"],
        &["--token-url", "http://h/t"],
        &["--url", "http://h/a"],
        &["--scope", "s"],
        &["--auth", "post"],
        &["--token-header", "x-a: 1"],
        &["--api-header", "x-a: 1"],
        &["--grant", "token-exchange"],
        &["--subject-token-file", "t"],
    ] {
        refused.push(with(&serve, flag));
    }
    for args in &refused {
        match parse(args) {
            Err(error) => assert_eq!(error.exit_code(), 2, "{args:?}"),
            Ok(_) => panic!("{args:?} parsed"),
        }
    }
    for args in [
        with(
            &remote,
            &[
                "--grant",
                "token-exchange",
                "--subject-token-file",
                "t",
                "--actor-token-file",
                "a",
                "--actor-token-type",
                "urn:ietf:params:oauth:token-type:access_token",
            ],
        ),
        vec!["--grant", "client-credentials"],
        with(&remote, &["--client-secret", "-starts-with-a-dash"]),
        with(&serve, &["--ttl", "3", "--client-id", "x"]),
        vec!["--ttl", "3", "--duration", "2", "--concurrency", "4"],
    ] {
        assert!(parse(&args).is_ok(), "{args:?}");
    }
}

#[test]
fn dpop_goes_with_every_provider_auth_grant_and_url_but_not_with_serve() {
    let dpop_of = |args: &[&str]| match parse(args) {
        Ok(Command::Run(args)) => args.dpop,
        Ok(Command::Serve(_)) => panic!("not --serve"),
        Err(error) => panic!("{args:?}: {}", error.render()),
    };
    assert!(!dpop_of(&[]));
    assert!(dpop_of(&["--dpop"]));
    assert!(dpop_of(&["--dpop", "--ttl", "5", "--concurrency", "1"]));
    let exchange = ["--grant", "token-exchange", "--subject-token-file", "t"];
    let embedded_exchange: Vec<&str> = ["--dpop"].iter().chain(&exchange).copied().collect();
    assert!(dpop_of(&embedded_exchange));
    for provider in [["--token-url", "http://h/t"], ["--issuer", "http://h/"]] {
        for auth in ["basic", "post", "client-secret-jwt"] {
            let mut args = vec!["--dpop", "--client-id", "i", "--client-secret", "s"];
            args.extend(provider);
            args.extend(["--auth", auth, "--url", "http://h/a", "--url", "http://h/b"]);
            args.extend(["--resource", "http://h/a", "--resource", "http://h/b"]);
            assert!(dpop_of(&args), "{args:?}");
            args.extend(exchange);
            assert!(dpop_of(&args), "{args:?}");
        }
    }
    // Nothing to bind in --serve: its provider checks proofs anyway.
    let serve = ["--serve", "5", "--client-secret", "s", "--api-key", "k"];
    let with_dpop: Vec<&str> = serve.iter().chain(&["--dpop"]).copied().collect();
    let Err(error) = parse(&with_dpop) else {
        panic!("--serve --dpop parsed");
    };
    assert_eq!(error.exit_code(), 2);
    assert!(error.render().to_string().contains("--dpop"));
    // A flag takes no value.
    let Err(error) = parse(&["--dpop=yes"]) else {
        panic!("--dpop=yes parsed");
    };
    assert_eq!(error.exit_code(), 2);
}

#[cfg(feature = "redis")]
#[test]
fn dpop_is_refused_with_the_fleet_store_naming_both_flags() {
    for (store, flag) in [
        (["--redis", "redis://127.0.0.1:1/"], "--redis"),
        (
            ["--redis-cluster", "redis://127.0.0.1:1/"],
            "--redis-cluster",
        ),
    ] {
        let args: Vec<&str> = ["--dpop"].iter().chain(&store).copied().collect();
        let Err(error) = parse(&args) else {
            panic!("{args:?} parsed");
        };
        assert_eq!(error.exit_code(), 2);
        let shown = error.render().to_string();
        assert!(
            shown.starts_with(&format!("error: --dpop does not go with {flag}: ")),
            "{shown}"
        );
        assert!(shown.contains("Usage: demo"), "{shown}");
    }
}

#[test]
fn repeatable_flags_add_up() {
    let Ok(Command::Run(args)) = parse(&[
        "--scope",
        "a",
        "--scope=b",
        "--token-header",
        "x-one: 1",
        "--token-header",
        "x-two: 2",
        "--api-header",
        "x-three: 3",
        "--api-header",
        "x-four: 4",
    ]) else {
        panic!("the arguments parse");
    };
    assert_eq!(args.scopes, ["a", "b"]);
    let names = |headers: &[(String, String)]| -> Vec<String> {
        headers.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(names(&args.token_headers), ["x-one", "x-two"]);
    assert_eq!(names(&args.api_headers), ["x-three", "x-four"]);
}

#[cfg(feature = "redis")]
#[test]
fn redis_cluster_seeds_add_up_to_one_store_whose_debug_shows_no_password() {
    let Ok(Command::Run(args)) = parse(&[
        "--redis-cluster",
        "redis://:PASSW0RD@127.0.0.1:7000/",
        "--redis-cluster",
        "redis://:PASSW0RD@127.0.0.1:7001/",
        "--redis-cluster=redis://:PASSW0RD@127.0.0.1:7002",
    ]) else {
        panic!("the arguments parse");
    };
    assert!(args.redis.is_some());
    // Every seed, in the order given.
    assert_eq!(
        args.redis_seeds,
        ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
    );
    let shown = format!("{args:?}");
    assert!(!shown.contains("PASSW0RD"), "{shown}");
    assert!(
        shown.contains(r#"redis_seeds: ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]"#),
        "{shown}"
    );
}

const REMOTE: [&str; 4] = ["--token-url", "http://h/t", "--client-id", "i"];

fn tokens_of(more: &[&str]) -> Result<Tokens, clap::Error> {
    let args: Vec<&str> = REMOTE.iter().chain(more).copied().collect();
    match parse(&args)? {
        Command::Run(args) => Ok(args.tokens),
        Command::Serve(_) => panic!("not --serve"),
    }
}

fn url_token(resource: Option<&str>, audience: Option<&str>) -> UrlToken {
    UrlToken {
        resource: resource.map(str::to_owned),
        audience: audience.map(str::to_owned),
    }
}

#[test]
fn several_urls_pair_with_resources_and_audiences_by_position() {
    let tokens = tokens_of(&[
        "--url",
        "http://h/a",
        "--resource",
        "https://a.example/",
        "--url",
        "http://h/b",
        "--resource",
        "https://b.example/",
        "--audience",
        "aud-a",
        "--audience",
        "aud-b",
    ])
    .unwrap();
    assert_eq!(
        tokens,
        Tokens::PerUrl(vec![
            url_token(Some("https://a.example/"), Some("aud-a")),
            url_token(Some("https://b.example/"), Some("aud-b")),
        ])
    );
    let Tokens::PerUrl(each) = &tokens else {
        unreachable!()
    };
    // The JSON names a token by its resource; messages by both.
    assert_eq!(each[0].key(), Some("https://a.example/"));
    assert_eq!(
        each[0].describe().as_deref(),
        Some("resource https://a.example/, audience aud-a")
    );
    // Audiences alone pair too, and name the token.
    let Tokens::PerUrl(each) = tokens_of(&[
        "--url",
        "http://h/a",
        "--url",
        "http://h/b",
        "--audience",
        "aud-a",
        "--audience",
        "aud-b",
    ])
    .unwrap() else {
        panic!("paired");
    };
    assert_eq!(each[1].key(), Some("aud-b"));
    assert_eq!(each[1].describe().as_deref(), Some("audience aud-b"));
}

#[test]
fn with_one_url_or_no_resource_every_request_has_the_one_token() {
    assert_eq!(
        tokens_of(&[
            "--url",
            "http://h/a",
            "--resource",
            "https://a.example/",
            "--resource",
            "https://b.example/",
            "--audience",
            "aud",
        ])
        .unwrap(),
        Tokens::One {
            resources: vec!["https://a.example/".into(), "https://b.example/".into()],
            audiences: vec!["aud".into()],
        }
    );
    let unnamed = tokens_of(&["--url", "http://h/a", "--url", "http://h/b"]).unwrap();
    assert_eq!(
        unnamed,
        Tokens::One {
            resources: vec![],
            audiences: vec![]
        }
    );
}

#[test]
fn pairing_refusals_say_what_is_wrong() {
    let two_urls = ["--url", "http://h/a", "--url", "http://h/b"];
    let with = |more: &[&'static str]| -> Vec<&'static str> {
        two_urls.iter().chain(more).copied().collect()
    };
    for (args, says) in [
        (
            with(&["--resource", "https://a/"]),
            "2 --url but 1 --resource",
        ),
        (
            with(&[
                "--resource",
                "https://a/",
                "--resource",
                "https://b/",
                "--audience",
                "x",
            ]),
            "2 --url but 1 --audience",
        ),
        (
            vec![
                "--url",
                "http://h/a?x=1",
                "--url",
                "http://h:80/a?y=2",
                "--resource",
                "https://a/",
                "--resource",
                "https://b/",
            ],
            "--url number 1 and 2 differ only in their query",
        ),
    ] {
        let Err(error) = tokens_of(&args) else {
            panic!("{args:?} parsed");
        };
        assert_eq!(error.exit_code(), 2, "{args:?}");
        let shown = error.render().to_string();
        assert!(shown.starts_with(&format!("error: {says}")), "{shown}");
        assert!(shown.contains("Usage: demo"), "{shown}");
    }
    // The same URL twice with the same resource is no ambiguity.
    assert!(
        tokens_of(&[
            "--url",
            "http://h/a?x=1",
            "--url",
            "http://h/a?y=2",
            "--resource",
            "https://a/",
            "--resource",
            "https://a/",
        ])
        .is_ok()
    );
}

#[test]
fn resources_must_be_absolute_uris_without_a_fragment_or_user_info_and_are_trimmed() {
    for bad in ["relative/path", "https://a.example/#frag", ""] {
        let Err(error) = tokens_of(&["--url", "http://h/a", "--resource", bad]) else {
            panic!("{bad:?} parsed");
        };
        assert_eq!(error.exit_code(), 2);
    }
    assert!(tokens_of(&["--url", "http://h/a", "--resource", "urn:example:api"]).is_ok());
    // The output names a resource as given: one with a user name or
    // password is refused, without repeating it.
    for (flag, bad) in [
        ("--resource", "https://u:S3CR3T@api.example/"),
        ("--resource", "https://S3CR3T@api.example/"),
        ("--audience", "https://u:S3CR3T@api.example/"),
    ] {
        let Err(error) = tokens_of(&["--url", "http://h/a", flag, bad]) else {
            panic!("{bad:?} parsed");
        };
        assert_eq!(error.exit_code(), 2);
        let shown = error.render().to_string();
        assert!(
            shown.starts_with(&format!("error: {flag} must not hold a user name")),
            "{shown}"
        );
        assert!(!shown.contains("S3CR3T"), "{shown}");
    }
    // Spaces around a resource are trimmed, as the URI parser does,
    // and none inside are taken.
    assert_eq!(
        tokens_of(&[
            "--url",
            "http://h/a",
            "--resource",
            " https://a.example/ \n"
        ])
        .unwrap(),
        Tokens::One {
            resources: vec!["https://a.example/".into()],
            audiences: vec![],
        }
    );
    for inside in ["https://a.example/x y", "https://a.example/x\ty"] {
        assert!(
            tokens_of(&["--url", "http://h/a", "--resource", inside]).is_err(),
            "{inside:?}"
        );
    }
    let serve = ["--serve", "5", "--client-secret", "s", "--api-key", "k"];
    for flag in [["--resource", "https://a/"], ["--audience", "a"]] {
        let args: Vec<&str> = serve.iter().chain(&flag).copied().collect();
        assert!(parse(&args).is_err(), "{args:?}");
    }
}
