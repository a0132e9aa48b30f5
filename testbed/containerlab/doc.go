// Package containerlab generates the lab's built-in topologies as
// containerlab topologies (NAME.clab.yml plus the files their containers
// bind) from the same topology.Plan the namespace lab builds, and checks or
// rewrites the committed copies. The generated files live in this
// directory, beside the generator (see README.md); `podroute-lab clab`
// writes them and the tests check they are current.
//
// What it must not touch: anything but the generated files of the topology
// it is asked about (Write refuses paths outside NAME.clab.yml and NAME/).
// It runs no container, creates no namespace and needs neither root nor
// Docker.
package containerlab
