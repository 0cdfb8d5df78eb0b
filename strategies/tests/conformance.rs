//! Every built-in strategy passes the conformance kit third-party strategies
//! are given (`gpusel_core::testing`), on the bundled example snapshots.

use gpusel_core::testing::check_strategy;
use gpusel_strategies::StrategyKind;
use strum::IntoEnumIterator;

#[test]
fn every_strategy_conforms_on_the_examples() {
    for example in ["lab-8xa100.json", "mig-2xh100.json"] {
        let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let snapshot = gpusel_core::parse_snapshot(&text, path.as_ref()).unwrap();
        for kind in StrategyKind::iter() {
            check_strategy(kind.build().as_ref(), &snapshot)
                .unwrap_or_else(|v| panic!("{} on {example}: {v}", kind.name()));
        }
    }
}
