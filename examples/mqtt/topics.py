"""MQTT topic filters: validation, one-off matching, and a subscription trie.

A publish walks the trie once, level by level, following the exact child, the
`+` child and collecting the `#` child's subscribers: the cost grows with the
topic's depth, not with the number of subscriptions.

MQTT 3.1.1 rules (section 4.7): levels are separated by `/`; `+` matches one
whole level, `#` the parent level and every level below and must be last;
wildcards at the first level do not match topics beginning with `$`.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable

__all__ = ["TopicTrie", "valid_filter", "valid_topic", "matches"]


def valid_topic(topic: str) -> bool:
    """A topic name to publish to: non-empty, no wildcards, no NUL."""
    return bool(topic) and not any(c in topic for c in "+#\0")


def valid_filter(topic_filter: str) -> bool:
    """A subscription filter: `+` and `#` occupy whole levels, `#` only the last."""
    if not topic_filter or "\0" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` (used for retained messages)."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


class _Node:
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subscribers: dict[Hashable, Any] = (
            {}
        )  # subscriber -> its data (granted QoS)


class TopicTrie:
    """Subscribers by topic filter; `match(topic)` finds every matching one."""

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, topic_filter: str, subscriber: Hashable, data: Any = 0) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.subscribers[subscriber] = data

    def remove(self, topic_filter: str, subscriber: Hashable) -> bool:
        """Drop one subscription (and the trie nodes left empty); False if absent."""
        path = [self._root]
        for level in topic_filter.split("/"):
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        if subscriber not in path[-1].subscribers:
            return False
        del path[-1].subscribers[subscriber]
        levels = topic_filter.split("/")
        # Prune from the leaf up while nodes hold nothing.
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.subscribers or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def match(self, topic: str) -> dict[Hashable, Any]:
        """Every subscriber with a filter matching `topic` (each once)."""
        found: dict[Hashable, Any] = {}
        levels = topic.split("/")
        last = len(levels)
        # (node, depth) pairs still to expand; depth = levels consumed.
        stack = [(self._root, 0)]
        dollar = topic.startswith("$")
        while stack:
            node, depth = stack.pop()
            children = node.children
            wildcards = not (dollar and depth == 0)
            if wildcards:
                multi = children.get("#")
                if multi is not None:
                    found.update(multi.subscribers)  # `a/#` matches `a` and below
            if depth == last:
                found.update(node.subscribers)
                continue
            exact = children.get(levels[depth])
            if exact is not None:
                stack.append((exact, depth + 1))
            if wildcards:
                single = children.get("+")
                if single is not None:
                    stack.append((single, depth + 1))
        return found

    def __len__(self) -> int:
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += len(node.subscribers)
            stack.extend(node.children.values())
        return count


def remove_all(trie: TopicTrie, filters: Iterable[str], subscriber: Hashable) -> None:
    for topic_filter in filters:
        trie.remove(topic_filter, subscriber)
