//! Tests of the journal through its public `Store` API and the fault-injecting file layer.
