//! Which targets of a shootdown share one ICR write.
//!
//! In x2APIC cluster mode one logical IPI reaches every named member of one cluster (16
//! consecutive x2APIC IDs), so a shootdown can interrupt up to 16 CPUs with one write. The
//! grouper takes the targets one at a time, in the order the shooter queues them, and hands
//! back each group once the next target cannot join it: consecutive CPU indices usually sit
//! in one cluster (firmware lists CPUs by APIC ID), and a cluster met again later just costs
//! another write. Nothing here is sent; the kernel turns each [`IpiGroup`] into ICR writes.

use keel_apic::X2ApicCluster;

/// Most CPUs one group holds: the member bits of one x2APIC cluster.
pub const GROUP_CAPACITY: usize = 16;

/// Targets one ICR write reaches: the members of one x2APIC cluster, or one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpiGroup {
    /// The members' joined logical destination; `None` for a CPU addressed physically (no
    /// logical ID, or xAPIC mode).
    cluster: Option<X2ApicCluster>,
    /// The kernel's CPU indices of the members (the physical fallback addresses each).
    cpus: [u32; GROUP_CAPACITY],
    len: usize,
}

impl IpiGroup {
    #[inline]
    fn of(cpu: u32, cluster: Option<X2ApicCluster>) -> IpiGroup {
        let mut cpus = [0; GROUP_CAPACITY];
        cpus[0] = cpu;
        IpiGroup { cluster, cpus, len: 1 }
    }

    /// The logical destination when one write reaches several members; `None` when the group
    /// is one CPU (a physical IPI costs the same write and needs no logical ID).
    #[inline]
    pub fn logical(&self) -> Option<X2ApicCluster> {
        self.cluster.filter(|_| self.len > 1)
    }

    /// The members' CPU indices, in the order they were added.
    #[inline]
    pub fn cpus(&self) -> &[u32] {
        &self.cpus[..self.len]
    }

    /// Adds `cpu` if its logical ID is in this group's cluster and there is room; false
    /// otherwise (physical members never share).
    #[inline]
    fn join(&mut self, cpu: u32, cluster: Option<X2ApicCluster>) -> bool {
        let joined = self.cluster.zip(cluster).and_then(|(mine, theirs)| mine.join(theirs));
        match joined {
            Some(c) if self.len < GROUP_CAPACITY => {
                self.cluster = Some(c);
                self.cpus[self.len] = cpu;
                self.len += 1;
                true
            }
            _ => false,
        }
    }
}

/// Gathers consecutive targets of one x2APIC cluster into groups.
#[derive(Default)]
pub struct IpiGrouper {
    open: Option<IpiGroup>,
}

impl IpiGrouper {
    /// Adds target `cpu` with its logical x2APIC ID (`None`: address it physically). Returns
    /// the group this target closed, to be sent now.
    #[must_use = "a closed group must be sent"]
    #[inline]
    pub fn add(&mut self, cpu: u32, cluster: Option<X2ApicCluster>) -> Option<IpiGroup> {
        if let Some(open) = &mut self.open {
            if open.join(cpu, cluster) {
                return None;
            }
        }
        self.open.replace(IpiGroup::of(cpu, cluster))
    }

    /// Whether no target was added since the last group closed (none at all, at first).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.open.is_none()
    }

    /// The last group, to be sent now.
    #[must_use = "the last group must be sent"]
    #[inline]
    pub fn finish(self) -> Option<IpiGroup> {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_apic::ApicId;

    fn of(id: u32) -> Option<X2ApicCluster> {
        Some(X2ApicCluster::of_apic_id(ApicId::new(id)))
    }

    /// Groups for targets given as (CPU index, logical ID).
    fn group(targets: &[(u32, Option<X2ApicCluster>)]) -> Vec<IpiGroup> {
        let mut grouper = IpiGrouper::default();
        assert!(grouper.is_empty());
        let mut groups: Vec<IpiGroup> =
            targets.iter().filter_map(|&(cpu, c)| grouper.add(cpu, c)).collect();
        assert_eq!(grouper.is_empty(), targets.is_empty(), "the last target's group stays open");
        groups.extend(grouper.finish());
        groups
    }

    #[test]
    fn one_cluster_is_one_logical_write() {
        let groups = group(&[(1, of(1)), (2, of(2)), (3, of(15))]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].cpus(), [1, 2, 3]);
        assert_eq!(groups[0].logical().unwrap().raw(), 1 << 1 | 1 << 2 | 1 << 15);
    }

    #[test]
    fn a_lone_target_is_physical() {
        let groups = group(&[(5, of(5))]);
        assert_eq!((groups.len(), groups[0].logical(), groups[0].cpus()), (1, None, &[5][..]));
        assert!(group(&[]).is_empty());
    }

    #[test]
    fn clusters_split_and_a_cluster_met_again_costs_another_write() {
        // APIC IDs 1, 17 (cluster 1), 2: three groups, the first and last both cluster 0.
        let groups = group(&[(0, of(1)), (1, of(17)), (2, of(2))]);
        assert_eq!(
            groups.iter().map(|g| g.cpus().to_vec()).collect::<Vec<_>>(),
            [vec![0], vec![1], vec![2]]
        );
        // Sparse IDs: 257 is cluster 16, member 1.
        let groups = group(&[(0, of(256)), (1, of(257)), (2, of(300))]);
        assert_eq!(groups[0].logical().unwrap().raw(), 0x0010_0003);
        assert_eq!(groups[1].cpus(), [2]);
    }

    #[test]
    fn physical_targets_never_share() {
        let groups = group(&[(0, None), (1, None), (2, of(2)), (3, None)]);
        assert_eq!(groups.len(), 4);
        assert!(groups.iter().all(|g| g.logical().is_none() && g.cpus().len() == 1));
    }

    #[test]
    fn a_full_cluster_is_one_write_and_duplicates_cannot_overflow() {
        let all: Vec<_> = (0..16).map(|i| (i, of(i))).collect();
        let groups = group(&all);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].logical().unwrap().members(), 0xFFFF);
        // Firmware that gave two CPUs one logical ID: the group still ends at its capacity.
        let twins: Vec<_> = (0..40).map(|i| (i, of(0))).collect();
        let groups = group(&twins);
        assert_eq!(groups.iter().map(|g| g.cpus().len()).collect::<Vec<_>>(), [16, 16, 8]);
    }
}
