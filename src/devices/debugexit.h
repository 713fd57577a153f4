/* debugexit.h: the debug-exit port (0xf4): a guest write of v ends tandem with status v. */
#pragma once

struct vm;

int debugexit_create(struct vm *vm);
