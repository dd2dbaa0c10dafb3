"""The quiesce Lambda: the state machine's ``Quiesce`` state, the same wait as ``resgate run``'s quiesce."""
