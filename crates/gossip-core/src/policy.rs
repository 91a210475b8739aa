//! The dissemination policy: how a node spreads a new message over its links.
//!
//! Three policies share one node (the seen-cache, the message cache, per-hop acknowledgements and
//! retries, announcements and GRAFTs); they differ only in the decisions below, which the node asks
//! of its [`Dissemination`] instead of branching on its configuration:
//!
//! | decision                                   | Plumtree      | rooted trees        | flooding    |
//! |--------------------------------------------|---------------|---------------------|-------------|
//! | a new link starts                          | undecided     | lazy (trees decide) | undecided   |
//! | who gets a push                            | eager links, a fanout of undecided ones | the message's tree (parent, children); every link within `eager_radius` hops of the origin | every link |
//! | the first copy's link becomes eager        | yes           | no                  | no          |
//! | a duplicate reshapes the tree (PRUNE, swap) | yes          | no                  | no          |
//! | PRUNE and GRAFT change a link's mode       | yes           | no                  | yes (unused) |
//! | announcers are asked nearest-first         | no            | yes                 | no          |
//! | TREE frames, hold-downs, tree choice       | no            | yes                 | no          |

use crate::config::{Config, Strategy};

/// How a link carries new messages from this node (Plumtree's view of a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Up, but no message has crossed it yet: the adaptive fanout decides.
    Undecided,
    /// Part of the tree: messages are pushed.
    Eager,
    /// Off the tree: messages are announced.
    Lazy,
}

/// What a new message does on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The message is pushed (and its acknowledgement awaited).
    Push,
    /// The message id is announced in the next IHAVE.
    Announce,
    /// The adaptive fanout decides between the two, and the link's mode follows.
    Fanout,
}

/// The dissemination policy of a node, fixed by its [`Config`] ([`Config::strategy`] and
/// [`Config::rooted_tree`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dissemination {
    /// Plumtree, its tree shaped by the hop counts of duplicates, and the adaptive fanout for new
    /// links.
    Plumtree,
    /// Plumtree's repair (IHAVE, GRAFT, acknowledgements) over [`Config::trees`] rooted breadth-first
    /// trees that only links shape.
    RootedTrees,
    /// The JavaScript library's flooding: every new message to every link but its sender.
    Flood,
}

impl Dissemination {
    /// The policy `config` asks for (`rooted_tree` applies to Plumtree only).
    pub(crate) fn of(config: &Config) -> Self {
        match (config.strategy, config.rooted_tree) {
            (Strategy::Flood, _) => Dissemination::Flood,
            (Strategy::Plumtree, true) => Dissemination::RootedTrees,
            (Strategy::Plumtree, false) => Dissemination::Plumtree,
        }
    }

    /// Whether the node keeps rooted trees: TREE frames, places, hold-downs, the tree a message
    /// travels on.
    pub(crate) fn keeps_trees(self) -> bool {
        self == Dissemination::RootedTrees
    }

    /// The mode of a link that just came up.
    pub(crate) fn new_link(self) -> Mode {
        match self {
            // The tree, not the first message, decides whether the link is eager.
            Dissemination::RootedTrees => Mode::Lazy,
            Dissemination::Plumtree | Dissemination::Flood => Mode::Undecided,
        }
    }

    /// What a new message does on a link in `mode`, `on_tree` telling whether the link is on the
    /// message's rooted tree (parent or child; rooted trees only), `near_origin` whether the message
    /// is still inside [`Config::eager_radius`] (rooted trees only).
    pub(crate) fn target(self, mode: Mode, on_tree: bool, near_origin: bool) -> Target {
        match self {
            Dissemination::Flood => Target::Push,
            Dissemination::RootedTrees if on_tree || near_origin => Target::Push,
            Dissemination::RootedTrees => Target::Announce,
            Dissemination::Plumtree => match mode {
                Mode::Eager => Target::Push,
                Mode::Lazy => Target::Announce,
                Mode::Undecided => Target::Fanout,
            },
        }
    }

    /// Whether the link that delivered a message first becomes eager (a tree edge).
    pub(crate) fn first_copy_makes_eager(self) -> bool {
        self == Dissemination::Plumtree
    }

    /// Whether a duplicate copy reshapes the tree (a parent swap or a PRUNE of its link).
    pub(crate) fn duplicates_shape_tree(self) -> bool {
        self == Dissemination::Plumtree
    }

    /// Whether a PRUNE received, or a GRAFT sent or received, sets the link's mode (lazy, eager).
    /// On rooted trees only links shape the trees.
    pub(crate) fn grafts_and_prunes_set_modes(self) -> bool {
        self != Dissemination::RootedTrees
    }

    /// Whether the announcers of a missing message are asked nearest to its origin first (so that a
    /// repaired delivery is not many hops longer than the tree's), rather than in the order they
    /// announced (plain Plumtree, whose tree follows the GRAFTs).
    pub(crate) fn nearest_announcer_first(self) -> bool {
        self == Dissemination::RootedTrees
    }

    /// Whether a message is not announced back to the links that announced it before it came. On
    /// rooted trees those announcements only cost frames. Plain Plumtree's reroutes and GRAFTs read
    /// the holders they tell; without them its tree split more often (docs/decisions.md §43).
    pub(crate) fn skips_announcers(self) -> bool {
        self == Dissemination::RootedTrees
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(strategy: Strategy, rooted_tree: bool) -> Dissemination {
        Dissemination::of(&Config {
            strategy,
            rooted_tree,
            ..Config::default()
        })
    }

    #[test]
    fn the_config_picks_the_policy() {
        assert_eq!(policy(Strategy::Plumtree, false), Dissemination::Plumtree);
        assert_eq!(policy(Strategy::Plumtree, true), Dissemination::RootedTrees);
        assert_eq!(policy(Strategy::Flood, false), Dissemination::Flood);
        assert_eq!(policy(Strategy::Flood, true), Dissemination::Flood);
    }

    #[test]
    fn each_policy_picks_its_targets() {
        use Dissemination::*;
        for mode in [Mode::Undecided, Mode::Eager, Mode::Lazy] {
            assert_eq!(Flood.target(mode, false, false), Target::Push);
            assert_eq!(RootedTrees.target(mode, true, false), Target::Push);
            assert_eq!(RootedTrees.target(mode, false, true), Target::Push);
            assert_eq!(RootedTrees.target(mode, false, false), Target::Announce);
        }
        assert_eq!(Plumtree.target(Mode::Eager, false, false), Target::Push);
        assert_eq!(Plumtree.target(Mode::Lazy, true, true), Target::Announce);
        assert_eq!(
            Plumtree.target(Mode::Undecided, false, false),
            Target::Fanout
        );
    }

    #[test]
    fn only_plumtree_lets_messages_shape_its_tree() {
        use Dissemination::*;
        assert!(Plumtree.first_copy_makes_eager() && Plumtree.duplicates_shape_tree());
        for other in [RootedTrees, Flood] {
            assert!(!other.first_copy_makes_eager() && !other.duplicates_shape_tree());
        }
        assert!(RootedTrees.keeps_trees() && !Plumtree.keeps_trees() && !Flood.keeps_trees());
        assert_eq!(RootedTrees.new_link(), Mode::Lazy);
        assert_eq!(Plumtree.new_link(), Mode::Undecided);
        assert!(!RootedTrees.grafts_and_prunes_set_modes());
        assert!(RootedTrees.nearest_announcer_first() && !Plumtree.nearest_announcer_first());
        assert!(RootedTrees.skips_announcers() && !Plumtree.skips_announcers());
    }
}
