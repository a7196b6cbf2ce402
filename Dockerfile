# syntax=docker/dockerfile:1
# regcred as one static (musl) binary on distroless/static: no libc, no shell,
# runs as UID 65532 (nonroot), which the Helm chart's securityContext expects.
#
#   docker build -t regcred:dev .

FROM rust:1.95-bookworm AS builder
# rustls' crypto provider aws-lc-rs (aws-lc-sys) and ring compile C for the
# musl target: musl-gcc from musl-tools; cmake and clang for aws-lc-sys when it
# falls back to its CMake build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake clang \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Only what the build reads: the workspace manifests (testenv is a member, so
# cargo needs it to load the workspace, though it is not built) and the sources.
COPY Cargo.toml Cargo.lock ./
COPY testenv testenv
COPY src src
# The caches keep downloaded crates and compiled dependencies across builds;
# the binary is copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin regcred \
 && cp target/x86_64-unknown-linux-musl/release/regcred /regcred

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /regcred /usr/local/bin/regcred
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/regcred"]
CMD ["run"]
