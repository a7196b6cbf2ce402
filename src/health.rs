//! Registry pull-auth health: prove a credential against a registry's `/v2/`
//! endpoint and, optionally, a manifest.
