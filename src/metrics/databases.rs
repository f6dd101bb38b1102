//! The server and application views of every database of the `databases` list, each
//! series with a `database` label (the entry's name): rendered from the members running
//! at scrape time, so a database removed by a reload leaves no series behind. The
//! analysis of the pools attributed to no database carries `database="__unattributed__"`.

use std::sync::Arc;

use super::{apps, limits, server, ConstLabels, Family, View};
use crate::fleet::Fleet;

/// Renders every member of the fleet.
pub struct FleetCollector {
    /// The running databases.
    fleet: Arc<Fleet>,
}

impl FleetCollector {
    /// A collector over `fleet`.
    pub fn new(fleet: Arc<Fleet>) -> FleetCollector {
        FleetCollector { fleet }
    }
}

impl View for FleetCollector {
    fn families(&self) -> Vec<Family<'static>> {
        let mut s: Vec<Family> = server::SPECS.iter().map(Family::new).collect();
        let mut a: Vec<Family> = apps::SPECS.iter().map(Family::new).collect();
        let mut l: Vec<Family> = limits::SPECS.iter().map(Family::new).collect();
        let members = self.fleet.members();
        // Series in label order: `__unattributed__` sorts before lower-case names only
        // by chance, so each name is placed where it sorts.
        let mut reports = self.fleet.reports();
        reports.sort_by(|x, y| x.0.cmp(&y.0));
        for (name, m) in &members {
            let state = m.server.borrow().clone();
            let consts = ConstLabels::database(Some(name));
            for f in s.iter_mut() {
                f.set_consts(&consts);
            }
            server::render(&mut s, &state);
            for f in l.iter_mut() {
                f.set_consts(&consts);
            }
            limits::render(&mut l, &state);
        }
        for (name, report) in &reports {
            let consts = ConstLabels::database(Some(name));
            for f in a.iter_mut() {
                f.set_consts(&consts);
            }
            apps::render(&mut a, report);
        }
        s.extend(a);
        s.extend(l);
        s
    }
}
