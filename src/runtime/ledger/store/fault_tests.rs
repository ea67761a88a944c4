//! Faults injected at every step of the store: errors and power loss.
