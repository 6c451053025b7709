"""protogen.runtime: the event-loop engine every generated server runs on."""
