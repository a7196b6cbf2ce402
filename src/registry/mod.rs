//! What registries are called and how images name them: registry hosts in
//! every spelling users, config files and runtimes write (Docker Hub has
//! several), and image references. Pure, no I/O. The `.dockerconfigjson`
//! codec, the pull-auth probe and the kubelet's keyring in the diagnosis all
//! read names here, so a host means the same registry everywhere. Which hosts
//! a provider serves is the provider's to say (`Provider::hosts`).

mod host;
mod reference;

pub use self::host::{
    DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, DOCKER_HUB_INDEX, api_base_url, canonical, host_of, is_docker_hub, split,
};
pub use self::reference::{ImageRef, image_host, repo_to_pull, split_domain};
