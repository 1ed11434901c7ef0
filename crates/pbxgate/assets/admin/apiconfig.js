// The apiconfig page's script.
