//! `make image`: regcred's container image without a Docker engine (see
//! `regcred_testenv::operator_image` for what is in it).
//!
//! ```text
//! regcred-image --binary target/release/regcred --out target/image/regcred [--tag dev]
//!               [--push registry.example.com/regcred:dev] [--plain-http]
//! ```
//!
//! Writes an OCI image layout to `--out` (`skopeo copy oci:<out>:<tag> ...`,
//! `crane push <out> ...` or `docker buildx imagetools` take it from there),
//! its SPDX SBOM beside it (`<out>.spdx.json`; the image config's
//! `org.opencontainers.image.source` label is `REGCRED_IMAGE_SOURCE`, else
//! git's `origin` when it is a URL, else the project's repository),
//! and, with `--push`, uploads it to a registry with plain registry API
//! calls: anonymously, or with Basic authentication when
//! `REGCRED_IMAGE_PUSH_USERNAME` and `REGCRED_IMAGE_PUSH_PASSWORD` are set.
//! `--plain-http` talks http:// to the registry (a local registry without TLS).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;

struct Args {
    binary: PathBuf,
    out: PathBuf,
    tag: String,
    push: Option<String>,
    plain_http: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut binary = None;
    let mut out = None;
    let mut tag = "dev".to_string();
    let mut push = None;
    let mut plain_http = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--binary" => binary = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--tag" => tag = value()?,
            "--push" => push = Some(value()?).filter(|p| !p.is_empty()),
            "--plain-http" => plain_http = true,
            other => bail!("unknown argument {other}; see the comment at the top of testenv/src/bin/regcred-image.rs"),
        }
    }
    Ok(Args {
        binary: binary.context("--binary <regcred binary> is required")?,
        out: out.context("--out <directory> is required")?,
        tag,
        push,
        plain_http,
    })
}

/// `host[:port]/repository[:tag]` → (host, repository, tag).
fn split_reference(reference: &str, default_tag: &str) -> anyhow::Result<(String, String, String)> {
    let (host, rest) = reference
        .split_once('/')
        .with_context(|| format!("--push {reference}: expected host[:port]/repository[:tag]"))?;
    let (repository, tag) = match rest.rsplit_once(':') {
        Some((repository, tag)) => (repository, tag),
        None => (rest, default_tag),
    };
    Ok((host.to_string(), repository.to_string(), tag.to_string()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let regcred_testenv::operator_image::Written { image, packages, sbom } =
        regcred_testenv::operator_image::write(&args.binary, &args.out, &args.tag)?;
    println!(
        "image {} ({} MB; base: {}) written to {} (OCI layout, tag {}); SBOM (SPDX 2.3 JSON) {}",
        image.digest(),
        image.size() / 1_000_000,
        packages.join(" "),
        args.out.display(),
        args.tag,
        sbom.display()
    );
    if let Some(reference) = args.push {
        let (host, repository, tag) = split_reference(&reference, &args.tag)?;
        let scheme = if args.plain_http { "http" } else { "https" };
        let authorization = match (
            std::env::var("REGCRED_IMAGE_PUSH_USERNAME"),
            std::env::var("REGCRED_IMAGE_PUSH_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            _ => None,
        };
        regcred_testenv::init_crypto();
        let http = reqwest::Client::new();
        let digest = image
            .push(
                &http,
                &format!("{scheme}://{host}"),
                &repository,
                &tag,
                authorization.as_deref(),
            )
            .await
            .with_context(|| format!("pushing to {host}/{repository}:{tag}"))?;
        println!("pushed {host}/{repository}:{tag}@{digest}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = parse().and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(args))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regcred-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}
