#include <criterion/criterion.h>
Test(os, placeholder) {}
