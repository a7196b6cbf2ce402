# syntax=docker/dockerfile:1
# regcred's image for CI systems with a Docker engine (or BuildKit): the
# glibc-linked release binary on a base assembled from Debian's own packages
# by hack/image-rootfs.sh (the libraries the binary links, found with ldd;
# ca-certificates; /etc/passwd and /etc/group with the non-root user 65532;
# /etc/nsswitch.conf so glibc resolves names from /etc/hosts and DNS). No
# shell, no package manager. `make image` builds the same image without a
# Docker engine (testenv/src/operator_image.rs runs the same script).
#
#   docker build -t regcred:dev .

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build reads: the workspace manifests (testenv and bench are
# members, so cargo needs them to load the workspace, though they are not
# built) and the sources.
COPY Cargo.toml Cargo.lock ./
COPY testenv testenv
COPY bench bench
COPY src src
# The caches keep downloaded crates and compiled dependencies across builds;
# the binary is copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin regcred \
 && cp target/release/regcred /regcred
# The base: the packages (at the versions installed here, which the binary
# was linked against) extracted with dpkg-deb, as distroless images are made.
COPY hack/image-rootfs.sh /usr/local/bin/image-rootfs.sh
RUN apt-get update -qq \
 && REGCRED_IMAGE_DEBS=/tmp/debs image-rootfs.sh /regcred /rootfs \
 && rm -rf /tmp/debs /var/lib/apt/lists/*

FROM scratch
COPY --from=builder /rootfs /
COPY --from=builder /regcred /usr/local/bin/regcred
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/regcred"]
CMD ["run"]
