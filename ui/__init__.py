"""Front-end helpers shared by the page, the terminal listener and the network server."""
