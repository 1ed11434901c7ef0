// The status page's script.
