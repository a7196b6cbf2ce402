//! The condition type every step returns and status writes: one home, so
//! that the steps need not import the status step.

/// One condition before timestamps: status `True`/`False`/`Unknown`, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(status: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
    pub fn is_false(&self) -> bool {
        self.status == "False"
    }
}
