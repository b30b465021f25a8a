"""What the tests share: speech to speak into the server, a fault-injecting proxy, a provider
that behaves as one documents, and a front end played in the kernel."""
