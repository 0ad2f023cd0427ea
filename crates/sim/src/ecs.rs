//! ECS task placement on container instances.

use berth_core::scaling::Room;

/// How ECS picks among the instances a task fits (ECS developer guide,
/// "task placement strategies").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// RunTask with no strategy: standalone tasks go to any instance that
    /// fits; modelled as a uniform draw.
    Random,
    /// `binpack` on memory: the instance with the least memory left that
    /// still fits, then the least CPU, then the lowest id.
    Binpack,
}

/// The instance `need` goes to, among `candidates` (id, what it has left),
/// or `None` when it fits none. `draw(n)` picks one of `n` for `Random`.
pub fn place(
    candidates: impl Iterator<Item = (usize, Room)> + Clone,
    need: Room,
    strategy: Strategy,
    draw: impl FnOnce(usize) -> usize,
) -> Option<usize> {
    let fitting = candidates.filter(move |(_, free)| need.fits(*free));
    match strategy {
        Strategy::Binpack => fitting
            .min_by_key(|(id, free)| (free.memory, free.cpu, *id))
            .map(|(id, _)| id),
        Strategy::Random => match fitting.clone().count() {
            0 => None,
            n => fitting.map(|(id, _)| id).nth(draw(n) % n),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(cpu: u32, memory: u32) -> Room {
        Room::new(cpu, memory, 0)
    }

    fn need(cpu: u32, memory: u32) -> Room {
        Room::new(cpu, memory, 0)
    }

    #[test]
    fn binpack_takes_the_fullest_instance_that_fits() {
        let cluster = [
            (0, free(2048, 7000)),
            (1, free(1024, 1500)),
            (2, free(512, 1000)),
            (3, free(1024, 1500)),
        ];
        // Instance 2 has too little CPU; 1 and 3 tie on memory and CPU: the
        // lower id wins.
        let chosen = place(
            cluster.into_iter(),
            need(1024, 1024),
            Strategy::Binpack,
            |_| 0,
        );
        assert_eq!(chosen, Some(1));
        assert_eq!(
            place(
                cluster.into_iter(),
                need(4096, 1024),
                Strategy::Binpack,
                |_| 0
            ),
            None
        );
        let gpu = Room::new(128, 128, 1);
        assert_eq!(
            place(cluster.into_iter(), gpu, Strategy::Binpack, |_| 0),
            None
        );
    }

    #[test]
    fn random_draws_among_the_instances_that_fit() {
        let cluster = [
            (0, free(2048, 7000)),
            (1, free(512, 1000)),
            (2, free(1024, 1500)),
        ];
        let mut seen = 0;
        let chosen = place(
            cluster.into_iter(),
            need(1024, 1024),
            Strategy::Random,
            |n| {
                seen = n;
                1
            },
        );
        assert_eq!((chosen, seen), (Some(2), 2));
    }
}
