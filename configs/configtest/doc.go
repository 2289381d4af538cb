// Package configtest holds what the tests of configs and of the packages
// that check a configuration further (daemon) share: the runner of a corpus
// of broken configuration files and the smallest configuration. It is for
// tests only: no non-test code imports it, and it never writes a file. It
// must not import configs, whose own tests import it.
package configtest
