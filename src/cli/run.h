/* run.h: `tandem run`: parse the VM options, build the machine, run the main loop. */
#pragma once

int run_main(int argc, char **argv);
